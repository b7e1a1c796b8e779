#include "ChatWindow.h"

#include <QAction>
#include <QApplication>
#include <QBuffer>
#include <QClipboard>
#include <QDateTime>
#include <QDesktopServices>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QImage>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QListWidget>
#include <QMenu>
#include <QMessageBox>
#include <QMouseEvent>
#include <QPointer>
#include <QPushButton>
#include <QResizeEvent>
#include <QScrollBar>
#include <QStackedWidget>
#include <QStandardPaths>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>

#include "AppSupport.h"
#include "Backend.h"
#include "Delegates.h"
#include "Dialogs.h"
#include "Theme.h"

namespace sotto::desktop {
namespace {

QToolButton* tool(theme::Icon icon, const QString& tip, const char* name) {
  auto* b = new QToolButton;
  b->setIcon(theme::icon(icon, theme::kMuted, 22));
  b->setIconSize(QSize(22, 22));
  b->setToolTip(tip);
  b->setObjectName(name);
  b->setCursor(Qt::PointingHandCursor);
  return b;
}

QFrame* line() {
  auto* f = new QFrame;
  f->setFixedHeight(1);
  f->setStyleSheet("background: #e3e6ea;");
  return f;
}

// A small JPEG preview of an image for the message (the SDK takes at most 8 KiB).
Bytes thumbnail_of(const QImage& img) {
  for (int side : {96, 64, 40}) {
    QImage small = img.scaled(side, side, Qt::KeepAspectRatio, Qt::SmoothTransformation);
    for (int quality : {70, 50, 30}) {
      QByteArray data;
      QBuffer buf(&data);
      buf.open(QIODevice::WriteOnly);
      small.save(&buf, "JPEG", quality);
      if (data.size() <= 8192) return Bytes(data.begin(), data.end());
    }
  }
  return {};
}

// Snippet with its highlighted ranges in bold on a marker colour, as rich text.
QString highlighted(const SearchHit& hit) {
  QString out;
  size_t pos = 0;
  const std::string& s = hit.snippet;
  for (const auto& h : hit.highlights) {
    if (h.begin < pos || h.end > s.size() || h.begin > h.end) continue;
    out += QString::fromStdString(s.substr(pos, h.begin - pos)).toHtmlEscaped();
    out += "<span style='background:#ffe066; font-weight:bold;'>" +
           QString::fromStdString(s.substr(h.begin, h.end - h.begin)).toHtmlEscaped() + "</span>";
    pos = h.end;
  }
  if (pos < s.size()) out += QString::fromStdString(s.substr(pos)).toHtmlEscaped();
  return out;
}

}  // namespace

ChatWindow::ChatWindow(Backend* backend, QSettings* settings, QWidget* parent)
    : QWidget(parent), backend_(backend), settings_(settings) {
  setObjectName("chatWindow");
  auto* l = new QHBoxLayout(this);
  l->setContentsMargins(0, 0, 0, 0);
  l->setSpacing(0);
  l->addWidget(build_sidebar());
  auto* sep = new QFrame;
  sep->setFixedWidth(1);
  sep->setStyleSheet("background: #e3e6ea;");
  l->addWidget(sep);
  l->addWidget(build_chat(), 1);
  l->addWidget(build_search());

  refresh_timer_.setSingleShot(true);
  refresh_timer_.setInterval(40);
  connect(&refresh_timer_, &QTimer::timeout, this, &ChatWindow::refresh_conversations);
  typing_timer_.setInterval(1000);
  connect(&typing_timer_, &QTimer::timeout, this, [this] {
    // Expire typing others stopped renewing, and stop ours after five idle seconds.
    qint64 now = QDateTime::currentMSecsSinceEpoch();
    std::vector<std::pair<ConversationId, QString>> expired;
    for (auto it = typing_.cbegin(); it != typing_.cend(); ++it)
      for (auto who = it.value().cbegin(); who != it.value().cend(); ++who)
        if (who.value() < now) expired.emplace_back(it.key(), who.key());
    for (const auto& [c, acc] : expired) typing_changed(c, acc, false);
    if (typing_sent_ && now - typing_sent_at_ > 5000) {
      typing_sent_ = false;
      ConversationId c = current();
      backend_->local(
          this, [c](Client& cl) { return cl.set_typing(c, false); }, [](Status) {});
    }
  });
  typing_timer_.start();
  highlight_timer_.setSingleShot(true);
  highlight_timer_.setInterval(2500);
  connect(&highlight_timer_, &QTimer::timeout, this, [this] { messages_.set_highlight({}); });
  search_timer_.setSingleShot(true);
  search_timer_.setInterval(250);
  connect(&search_timer_, &QTimer::timeout, this, [this] { run_search(search_field_->text()); });

  // Pictures load whenever rows appear or change (a download finished, say).
  connect(&messages_, &QAbstractItemModel::rowsInserted, this,
          [this](const QModelIndex&, int first, int last) { load_images(first, last); });
  connect(&messages_, &QAbstractItemModel::dataChanged, this,
          [this](const QModelIndex& from, const QModelIndex& to) {
            load_images(from.row(), to.row());
          });
  connect(&messages_, &QAbstractItemModel::modelReset, this,
          [this] { load_images(0, messages_.rowCount() - 1); });

  // Events.
  connect(backend_, &Backend::message_received, this, [this](const Message& m) {
    if (m.conversation == current()) {
      bool bottom = near_bottom() || m.outgoing;
      messages_.upsert(m);
      if (bottom) scroll_to_bottom();
      if (!m.outgoing) {
        typing_changed(m.conversation, QString::fromStdString(m.sender), false);
        mark_read();
      }
    }
    refresh_timer_.start();
  });
  connect(backend_, &Backend::message_status, this,
          [this](ConversationId c, const QString& id, MessageStatus s) {
            if (c == current()) {
              messages_.set_status(id, s);
              if (messages_.is_group()) {
                // Group receipts count recipients: fetch the message for "X of Y".
                std::string mid = id.toStdString();
                backend_->local(
                    this, [c, mid](Client& cl) { return cl.message(c, mid); },
                    [this](Result<Message> m) {
                      if (m.ok()) messages_.upsert(*m);
                    });
              }
            }
            refresh_timer_.start();
          });
  connect(backend_, &Backend::message_changed, this, [this](const Message& m) {
    if (m.conversation == current()) messages_.upsert(m);
    refresh_timer_.start();
  });
  connect(backend_, &Backend::message_removed, this, [this](ConversationId c, const QString& id) {
    if (c == current()) messages_.remove(id);
    refresh_timer_.start();
  });
  connect(backend_, &Backend::conversation_changed, this, [this](ConversationId c) {
    refresh_timer_.start();
    if (c == current()) {
      refresh_names();  // members, or a name the SDK just learned from the relay
      update_header();
    }
  });
  connect(backend_, &Backend::connection_changed, this, [this](ConnectionState s, const QString&) {
    update_connection_label();
    if (s == ConnectionState::kOnline && !watched_.empty()) {
      auto w = watched_;
      backend_->local(
          this, [w](Client& c) { return c.watch_presence(w); }, [](Status) {});
    }
  });
  connect(backend_, &Backend::typing, this, &ChatWindow::typing_changed);
  connect(backend_, &Backend::presence, this,
          [this](const QString& account, bool online, quint64 seen) {
            conversations_.set_presence(account, Presence{online, seen});
            update_header();
          });
  connect(backend_, &Backend::identity_changed, this,
          [this](const QString& account, const QString& handle) {
            auto* box = new QMessageBox(QMessageBox::Warning, tr("Safety number changed"),
                                        tr("The safety number with %1 changed. They may have "
                                           "reinstalled sotto, or someone may be intercepting. "
                                           "Messages to them wait until you accept the new "
                                           "number.")
                                            .arg(handle),
                                        QMessageBox::NoButton, this);
            auto* accept = box->addButton(tr("Accept new number"), QMessageBox::AcceptRole);
            auto* verify = box->addButton(tr("Verify first"), QMessageBox::RejectRole);
            box->setAttribute(Qt::WA_DeleteOnClose);
            connect(accept, &QPushButton::clicked, this, [this, account] {
              std::string a = account.toStdString();
              backend_->local(
                  this, [a](Client& c) { return c.accept_identity(a); }, [](Status) {});
            });
            connect(verify, &QPushButton::clicked, this,
                    [this, account, handle] { show_safety_number(account, handle); });
            box->open();
          });
}

QWidget* ChatWindow::build_sidebar() {
  auto* side = new QWidget;
  side->setObjectName("sidebar");
  side->setFixedWidth(330);
  auto* l = new QVBoxLayout(side);
  l->setContentsMargins(0, 0, 0, 0);
  l->setSpacing(0);

  auto* head = new QWidget;
  head->setFixedHeight(64);
  auto* hl = new QHBoxLayout(head);
  hl->setContentsMargins(14, 8, 8, 8);
  me_avatar_ = new QLabel;
  hl->addWidget(me_avatar_);
  auto* names = new QVBoxLayout;
  names->setSpacing(0);
  me_name_ = new QLabel;
  me_name_->setObjectName("myHandle");
  me_name_->setStyleSheet("font-weight: bold; font-size: 11pt;");
  names->addWidget(me_name_);
  connection_label_ = new QLabel;
  connection_label_->setObjectName("connectionLabel");
  connection_label_->setStyleSheet("color: #6b7280; font-size: 8pt;");
  names->addWidget(connection_label_);
  hl->addLayout(names, 1);
  auto* group = tool(theme::Icon::kGroup, tr("New group"), "newGroupButton");
  auto* gear = tool(theme::Icon::kGear, tr("Settings and account"), "settingsButton");
  // The app's menu.
  auto* menu = new QMenu(gear);
  menu->setObjectName("appMenu");
  auto add = [&](const QString& text, const char* name, void (ChatWindow::*slot)()) {
    QAction* a = menu->addAction(text, this, slot);
    a->setObjectName(name);
    return a;
  };
  add(tr("Settings…"), "settingsAction", &ChatWindow::show_settings);
  menu->addSeparator();
  add(tr("Change passphrase…"), "changePassphraseAction", &ChatWindow::show_change_passphrase);
  add(tr("Log out…"), "logOutAction", &ChatWindow::log_out);
  add(tr("Delete account…"), "deleteAccountAction", &ChatWindow::delete_account);
  gear->setMenu(menu);
  gear->setPopupMode(QToolButton::InstantPopup);
  gear->setStyleSheet("QToolButton::menu-indicator { image: none; }");
  hl->addWidget(group);
  hl->addWidget(gear);
  l->addWidget(head);

  auto* field_box = new QWidget;
  auto* fl = new QVBoxLayout(field_box);
  fl->setContentsMargins(12, 4, 12, 8);
  fl->setSpacing(4);
  new_chat_ = new QLineEdit;
  new_chat_->setObjectName("newChat");
  new_chat_->setPlaceholderText(tr("Start a chat: @handle"));
  new_chat_->addAction(theme::icon(theme::Icon::kPlus), QLineEdit::LeadingPosition);
  new_chat_->setStyleSheet(
      "QLineEdit { background: #f1f3f6; border: 1px solid transparent; "
      "border-radius: 18px; padding: 7px 12px; }"
      "QLineEdit:focus { background: white; border: 1px solid #2563eb; }");
  fl->addWidget(new_chat_);
  new_chat_error_ = new QLabel;
  new_chat_error_->setProperty("error", true);
  new_chat_error_->setWordWrap(true);
  new_chat_error_->hide();
  fl->addWidget(new_chat_error_);
  l->addWidget(field_box);

  conversation_list_ = new QListView;
  conversation_list_->setObjectName("conversationList");
  conversation_list_->setModel(&conversations_);
  conversation_list_->setItemDelegate(new ConversationDelegate(conversation_list_));
  conversation_list_->setMouseTracking(true);
  conversation_list_->setSelectionMode(QAbstractItemView::SingleSelection);
  conversation_list_->setVerticalScrollMode(QAbstractItemView::ScrollPerPixel);
  conversation_list_->setCursor(Qt::PointingHandCursor);
  l->addWidget(conversation_list_, 1);

  connect(group, &QToolButton::clicked, this, &ChatWindow::show_new_group);
  connect(conversation_list_, &QListView::clicked, this, [this](const QModelIndex& index) {
    const Conversation* c = conversations_.at(index.row());
    if (c && c->id != current()) open_conversation(c->id);
  });
  connect(new_chat_, &QLineEdit::returnPressed, this, [this] {
    QString handle = new_chat_->text().trimmed();
    if (handle.isEmpty()) return;
    new_chat_error_->hide();
    new_chat_->setEnabled(false);
    backend_->remote(
        this,
        [h = handle.toStdString()](Client& c) -> Result<ConversationId> {
          auto contact = c.add_contact(h);
          if (!contact.ok()) return contact.error();
          return c.direct_conversation(contact->account);
        },
        [this, handle](Result<ConversationId> conv) {
          new_chat_->setEnabled(true);
          if (!conv.ok()) {
            new_chat_error_->setText(conv.code() == ErrorCode::kNotFound
                                         ? tr("Nobody is called %1 on this relay.").arg(handle)
                                         : QString::fromStdString(conv.error().message));
            new_chat_error_->show();
            return;
          }
          new_chat_->clear();
          refresh_names();
          refresh_conversations();
          open_conversation(*conv);
          composer_->setFocus();
        });
  });
  return side;
}

QWidget* ChatWindow::build_chat() {
  chat_stack_ = new QStackedWidget;
  // Nothing open yet.
  auto* empty = new QWidget;
  empty->setAutoFillBackground(true);
  QPalette pal = empty->palette();
  pal.setColor(QPalette::Window, theme::kChatBackground);
  empty->setPalette(pal);
  auto* el = new QVBoxLayout(empty);
  el->addStretch();
  auto* lock = new QLabel;
  lock->setPixmap(theme::icon(theme::Icon::kShield, QColor(0xb6, 0xbd, 0xc7), 72).pixmap(72, 72));
  el->addWidget(lock, 0, Qt::AlignHCenter);
  auto* hint =
      new QLabel(tr("Pick a conversation, or start one with @handle.\nMessages are "
                    "end-to-end encrypted."));
  hint->setAlignment(Qt::AlignCenter);
  hint->setProperty("muted", true);
  el->addWidget(hint);
  el->addStretch();
  chat_stack_->addWidget(empty);

  auto* chat = new QWidget;
  auto* l = new QVBoxLayout(chat);
  l->setContentsMargins(0, 0, 0, 0);
  l->setSpacing(0);
  auto* head = new QWidget;
  head->setFixedHeight(64);
  auto* hl = new QHBoxLayout(head);
  hl->setContentsMargins(16, 8, 10, 8);
  hl->setSpacing(10);
  chat_avatar_ = new QLabel;
  hl->addWidget(chat_avatar_);
  auto* titles = new QVBoxLayout;
  titles->setSpacing(0);
  chat_title_ = new QLabel;
  chat_title_->setObjectName("chatTitle");
  chat_title_->setStyleSheet("font-weight: bold; font-size: 11pt;");
  titles->addWidget(chat_title_);
  chat_subtitle_ = new QLabel;
  chat_subtitle_->setObjectName("chatSubtitle");
  chat_subtitle_->setStyleSheet("color: #6b7280; font-size: 8pt;");
  titles->addWidget(chat_subtitle_);
  hl->addLayout(titles, 1);
  search_button_ = tool(theme::Icon::kSearch, tr("Search"), "searchButton");
  search_button_->setCheckable(true);
  safety_button_ = tool(theme::Icon::kShield, tr("Safety number"), "safetyButton");
  info_button_ = tool(theme::Icon::kInfo, tr("Details"), "infoButton");
  hl->addWidget(search_button_);
  hl->addWidget(safety_button_);
  hl->addWidget(info_button_);
  l->addWidget(head);
  l->addWidget(line());

  message_list_ = new QListView;
  message_list_->setObjectName("messageList");
  message_list_->setModel(&messages_);
  message_delegate_ = new MessageDelegate(message_list_, &conversations_, message_list_);
  message_list_->setItemDelegate(message_delegate_);
  message_list_->setSelectionMode(QAbstractItemView::NoSelection);
  message_list_->setVerticalScrollMode(QAbstractItemView::ScrollPerPixel);
  message_list_->verticalScrollBar()->setSingleStep(24);
  message_list_->setResizeMode(QListView::Adjust);
  message_list_->setUniformItemSizes(false);
  message_list_->setContextMenuPolicy(Qt::CustomContextMenu);
  message_list_->setStyleSheet("QListView { background: #f2f4f7; }");
  message_list_->viewport()->installEventFilter(this);
  l->addWidget(message_list_, 1);

  typing_label_ = new QLabel(" ");
  typing_label_->setObjectName("typingLabel");
  typing_label_->setStyleSheet(
      "background: #f2f4f7; color: #2563eb; font-style: italic; font-size: 8pt; "
      "padding: 2px 20px 4px 20px;");
  l->addWidget(typing_label_);
  l->addWidget(line());

  auto* composer_box = new QWidget;
  auto* cl = new QHBoxLayout(composer_box);
  cl->setContentsMargins(12, 10, 12, 10);
  cl->setSpacing(8);
  attach_button_ = tool(theme::Icon::kAttach, tr("Send a file"), "attachButton");
  cl->addWidget(attach_button_);
  composer_ = new QLineEdit;
  composer_->setObjectName("composer");
  composer_->setPlaceholderText(tr("Write a message"));
  composer_->setStyleSheet(
      "QLineEdit { background: #f1f3f6; border: 1px solid transparent; "
      "border-radius: 19px; padding: 9px 14px; }"
      "QLineEdit:focus { background: white; border: 1px solid #2563eb; }");
  cl->addWidget(composer_, 1);
  send_button_ = new QToolButton;
  send_button_->setObjectName("sendButton");
  send_button_->setIcon(theme::icon(theme::Icon::kSend, Qt::white, 20));
  send_button_->setIconSize(QSize(20, 20));
  send_button_->setFixedSize(40, 40);
  send_button_->setCursor(Qt::PointingHandCursor);
  send_button_->setStyleSheet(
      "QToolButton { background: #2563eb; border-radius: 20px; }"
      "QToolButton:hover { background: #1d4ed8; }");
  cl->addWidget(send_button_);
  l->addWidget(composer_box);
  chat_stack_->addWidget(chat);

  connect(composer_, &QLineEdit::returnPressed, this, &ChatWindow::send_current);
  connect(send_button_, &QToolButton::clicked, this, &ChatWindow::send_current);
  connect(composer_, &QLineEdit::textEdited, this, &ChatWindow::composer_edited);
  connect(attach_button_, &QToolButton::clicked, this, &ChatWindow::attach_file);
  connect(search_button_, &QToolButton::toggled, this, &ChatWindow::set_search_visible);
  connect(safety_button_, &QToolButton::clicked, this, [this] {
    const Conversation* c = conversations_.at(conversations_.row_of(current()));
    if (c && c->kind == ConversationKind::kDirect)
      show_safety_number(QString::fromStdString(c->peer), QString::fromStdString(c->title));
    else
      show_info();
  });
  connect(info_button_, &QToolButton::clicked, this, &ChatWindow::show_info);
  connect(message_list_, &QListView::customContextMenuRequested, this, &ChatWindow::message_menu);
  connect(message_list_->verticalScrollBar(), &QScrollBar::valueChanged, this, [this](int v) {
    if (v == message_list_->verticalScrollBar()->minimum() && !messages_.cursor().empty())
      load_older();
  });
  return chat_stack_;
}

QWidget* ChatWindow::build_search() {
  search_panel_ = new QWidget;
  search_panel_->setObjectName("searchPanel");
  search_panel_->setFixedWidth(340);
  auto* l = new QVBoxLayout(search_panel_);
  l->setContentsMargins(0, 0, 0, 0);
  l->setSpacing(0);
  auto* head = new QWidget;
  head->setFixedHeight(64);
  auto* hl = new QHBoxLayout(head);
  hl->setContentsMargins(16, 8, 8, 8);
  auto* title = new QLabel(tr("Search messages"));
  title->setStyleSheet("font-weight: bold; font-size: 11pt;");
  hl->addWidget(title, 1);
  auto* close = tool(theme::Icon::kClose, tr("Close"), "closeSearch");
  hl->addWidget(close);
  l->addWidget(head);
  l->addWidget(line());
  auto* box = new QWidget;
  auto* bl = new QVBoxLayout(box);
  bl->setContentsMargins(12, 10, 12, 6);
  search_field_ = new QLineEdit;
  search_field_->setObjectName("searchField");
  search_field_->setPlaceholderText(tr("Words, \"a phrase\", prefix*"));
  search_field_->addAction(theme::icon(theme::Icon::kSearch), QLineEdit::LeadingPosition);
  search_field_->setClearButtonEnabled(true);
  bl->addWidget(search_field_);
  search_status_ = new QLabel;
  search_status_->setProperty("muted", true);
  search_status_->setStyleSheet("font-size: 8pt;");
  bl->addWidget(search_status_);
  l->addWidget(box);
  search_results_ = new QListWidget;
  search_results_->setObjectName("searchResults");
  search_results_->setCursor(Qt::PointingHandCursor);
  search_results_->setStyleSheet(
      "QListWidget::item { border-bottom: 1px solid #eef0f3; }"
      "QListWidget::item:hover { background: #f6f7f9; }"
      "QListWidget::item:selected { background: #e8f0fe; }");
  l->addWidget(search_results_, 1);
  search_panel_->hide();

  auto* left_border = new QFrame(search_panel_);
  left_border->setGeometry(0, 0, 1, 10000);
  left_border->setStyleSheet("background: #e3e6ea;");

  connect(close, &QToolButton::clicked, this, [this] { search_button_->setChecked(false); });
  connect(search_field_, &QLineEdit::textChanged, this, [this] { search_timer_.start(); });
  connect(search_field_, &QLineEdit::returnPressed, this, [this] {
    search_timer_.stop();
    run_search(search_field_->text());
  });
  connect(search_results_, &QListWidget::itemClicked, this, [this](QListWidgetItem* item) {
    jump_to(item->data(Qt::UserRole).value<qint64>(), item->data(Qt::UserRole + 1).toString());
  });
  return search_panel_;
}

void ChatWindow::start() {
  me_name_->setText(QString::fromStdString(app::at_handle(backend_->handle().toStdString())));
  me_avatar_->setPixmap(theme::avatar(backend_->handle(), backend_->account(), 40));
  update_connection_label();
  // Privacy settings are the app's to keep: apply them at every start.
  bool hide = settings_->value("hide_presence", false).toBool();
  bool receipts = settings_->value("read_receipts", true).toBool();
  backend_->local(
      this,
      [hide, receipts](Client& c) -> Status {
        if (hide) SOTTO_TRY(c.set_presence_hidden(true));
        if (!receipts) SOTTO_TRY(c.set_read_receipts(false));
        return {};
      },
      [](Status) {});
  refresh_names();
  refresh_conversations();
}

void ChatWindow::update_connection_label() {
  switch (backend_->connection_state()) {
    case ConnectionState::kOnline:
      connection_label_->setText(tr("Online · end-to-end encrypted"));
      break;
    case ConnectionState::kSyncing:
      connection_label_->setText(tr("Receiving messages…"));
      break;
    case ConnectionState::kConnecting:
      connection_label_->setText(tr("Connecting…"));
      break;
    case ConnectionState::kOffline:
      connection_label_->setText(tr("Offline · retrying"));
      break;
    case ConnectionState::kLoggedOut:
      connection_label_->setText(tr("This device was removed from the account"));
      break;
  }
}

void ChatWindow::refresh_names() {
  ConversationId group = messages_.is_group() ? current() : 0;
  backend_->local(
      this,
      [group](Client& c) {
        return std::make_pair(c.contacts(), group ? c.group(group)
                                                  : Result<GroupInfo>(make_error(
                                                        ErrorCode::kNotFound, "not a group")));
      },
      [this](std::pair<Result<std::vector<Contact>>, Result<GroupInfo>> r) {
        if (r.first.ok())
          for (const auto& c : *r.first)
            names_[QString::fromStdString(c.account)] =
                QString::fromStdString(app::at_handle(c.handle));
        if (r.second.ok()) {
          group_ = *r.second;
          for (const auto& m : r.second->members)
            if (!m.handle.empty())
              names_[QString::fromStdString(m.account)] =
                  QString::fromStdString(app::at_handle(m.handle));
        }
        conversations_.set_names(names_);
        update_header();
        message_list_->viewport()->update();
      });
}

void ChatWindow::refresh_conversations() {
  backend_->local(
      this, [](Client& c) { return c.conversations(); },
      [this](Result<std::vector<Conversation>> list) {
        if (!list.ok()) return;
        ConversationId cur = current();
        // Presence of the people in the chats on screen (the first fifty).
        std::vector<ConversationId> watch;
        for (const auto& c : *list)
          if (c.kind == ConversationKind::kDirect && watch.size() < 50) watch.push_back(c.id);
        conversations_.set_conversations(std::move(*list));
        int row = conversations_.row_of(cur);
        if (row >= 0)
          conversation_list_->selectionModel()->select(conversations_.index(row),
                                                       QItemSelectionModel::ClearAndSelect);
        if (watch != watched_) {
          watched_ = watch;
          backend_->local(
              this, [watch](Client& c) { return c.watch_presence(watch); }, [](Status) {});
        }
        update_header();
      });
}

void ChatWindow::update_header() {
  const Conversation* c = conversations_.at(conversations_.row_of(current()));
  if (!c) return;
  bool group = c->kind == ConversationKind::kGroup;
  QString title = QString::fromStdString(c->title);
  QString peer = QString::fromStdString(c->peer);
  Presence p = conversations_.presence(peer);
  chat_avatar_->setPixmap(
      theme::avatar(title, group ? title : peer, 40, group, !group && p.online));
  chat_title_->setText(title);
  QString sub;
  const auto& typing = typing_.value(c->id);
  if (!typing.isEmpty()) {
    QStringList who;
    for (const auto& acc : typing.keys()) who << names_.value(acc, acc.left(8));
    sub = group ? tr("%1 typing…").arg(who.join(", ")) : tr("typing…");
    chat_subtitle_->setStyleSheet("color: #2563eb; font-size: 8pt;");
  } else {
    chat_subtitle_->setStyleSheet("color: #6b7280; font-size: 8pt;");
    if (group) {
      if (group_ && group_->conversation == c->id) {
        QStringList who;
        for (const auto& m : group_->members)
          who << (QString::fromStdString(m.account) == backend_->account()
                      ? tr("you")
                      : QString::fromStdString(app::at_handle(m.handle)));
        sub =
            tr("%n members", "", static_cast<int>(group_->members.size())) + " · " + who.join(", ");
        if (!group_->is_member) sub = tr("You are no longer a member");
      }
    } else if (p.online) {
      sub = tr("online");
    } else if (p.last_seen_ms) {
      sub = QString::fromStdString(app::format_last_seen(p.last_seen_ms, app::now_ms()));
    }
    if (c->expire_timer_s)
      sub += (sub.isEmpty() ? "" : "  ·  ") + QString::fromUtf8("\u23F1 ") +
             QString::fromStdString(app::format_duration(c->expire_timer_s));
  }
  chat_subtitle_->setText(sub);
  safety_button_->setVisible(!group);
}

void ChatWindow::open_conversation(ConversationId id, std::function<void()> then) {
  if (typing_sent_) {
    typing_sent_ = false;
    ConversationId old = current();
    backend_->local(
        this, [old](Client& c) { return c.set_typing(old, false); }, [](Status) {});
  }
  backend_->local(
      this, [id](Client& c) { return std::make_pair(c.conversation(id), c.messages(id, "", 50)); },
      [this, id, then](std::pair<Result<Conversation>, Result<MessagePage>> r) {
        if (!r.first.ok() || !r.second.ok()) return;
        bool group = r.first->kind == ConversationKind::kGroup;
        if (!group) group_.reset();
        messages_.reset(id, group, r.second->messages, r.second->next_cursor);
        chat_stack_->setCurrentIndex(1);
        int row = conversations_.row_of(id);
        if (row >= 0)
          conversation_list_->selectionModel()->select(conversations_.index(row),
                                                       QItemSelectionModel::ClearAndSelect);
        composer_->setEnabled(true);
        update_header();
        if (group) refresh_names();
        scroll_to_bottom();
        mark_read();
        if (then) then();
      });
}

void ChatWindow::scroll_to_bottom() {
  // After the view has laid the rows out.
  QTimer::singleShot(0, message_list_, [this] { message_list_->scrollToBottom(); });
}

bool ChatWindow::near_bottom() const {
  auto* bar = message_list_->verticalScrollBar();
  return bar->value() >= bar->maximum() - 80;
}

void ChatWindow::mark_read() {
  // Only what a person can see is read.
  if (!isVisible() || window()->isMinimized()) return;
  QString id = messages_.newest_incoming();
  if (id.isEmpty()) return;
  const Conversation* c = conversations_.at(conversations_.row_of(current()));
  if (c && c->unread == 0 && c->last_message && !c->last_message->outgoing &&
      QString::fromStdString(c->last_message->id) == id)
    return;
  ConversationId conv = current();
  backend_->local(
      this, [conv, m = id.toStdString()](Client& cl) { return cl.mark_read(conv, m); },
      [this](Status) { refresh_timer_.start(); });
}

void ChatWindow::load_older(std::function<void()> then) {
  if (loading_older_ || messages_.cursor().empty()) {
    if (then) then();
    return;
  }
  loading_older_ = true;
  ConversationId conv = current();
  std::string cursor = messages_.cursor();
  backend_->local(
      this, [conv, cursor](Client& c) { return c.messages(conv, cursor, 50); },
      [this, conv, then](Result<MessagePage> page) {
        loading_older_ = false;
        if (!page.ok() || conv != current()) return;
        auto* bar = message_list_->verticalScrollBar();
        int from_bottom = bar->maximum() - bar->value();
        messages_.prepend_older(page->messages, page->next_cursor);
        message_list_->doItemsLayout();
        bar->setValue(bar->maximum() - from_bottom);
        if (then) then();
      });
}

void ChatWindow::send_current() {
  QString text = composer_->text().trimmed();
  ConversationId conv = current();
  if (text.isEmpty() || !conv) return;
  composer_->clear();
  typing_sent_ = false;
  backend_->local(
      this,
      [conv, t = text.toStdString()](Client& c) -> Result<Message> {
        (void)c.set_typing(conv, false);
        auto id = c.send_text(conv, t);
        if (!id.ok()) return id.error();
        return c.message(conv, *id);
      },
      [this, text](Result<Message> m) {
        if (!m.ok()) {
          QMessageBox::warning(this, tr("Not sent"), QString::fromStdString(m.error().message));
          composer_->setText(text);
          return;
        }
        messages_.upsert(*m);
        scroll_to_bottom();
        refresh_timer_.start();
      });
}

void ChatWindow::composer_edited() {
  ConversationId conv = current();
  if (!conv) return;
  bool typing = !composer_->text().isEmpty();
  qint64 now = QDateTime::currentMSecsSinceEpoch();
  if (typing && (!typing_sent_ || now - typing_sent_at_ > 3000)) {
    typing_sent_ = true;
    typing_sent_at_ = now;
    backend_->local(
        this, [conv](Client& c) { return c.set_typing(conv, true); }, [](Status) {});
  } else if (!typing && typing_sent_) {
    typing_sent_ = false;
    backend_->local(
        this, [conv](Client& c) { return c.set_typing(conv, false); }, [](Status) {});
  }
}

void ChatWindow::typing_changed(ConversationId c, const QString& account, bool typing) {
  if (account == backend_->account()) return;
  if (typing)
    typing_[c][account] = QDateTime::currentMSecsSinceEpoch() + 16'000;
  else
    typing_[c].remove(account);
  if (typing_[c].isEmpty()) typing_.remove(c);
  conversations_.set_typing(c, typing_.contains(c));
  if (c == current()) {
    QStringList who;
    for (const auto& acc : typing_.value(c).keys()) who << names_.value(acc, acc.left(8));
    typing_label_->setText(who.isEmpty()     ? " "
                           : who.size() == 1 ? tr("%1 is typing…").arg(who[0])
                                             : tr("%1 are typing…").arg(who.join(", ")));
    update_header();
  }
}

void ChatWindow::attach_file() {
  if (!current()) return;
  auto* dialog = new QFileDialog(this, tr("Send a file"));
  dialog->setObjectName("attachDialog");
  dialog->setFileMode(QFileDialog::ExistingFile);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  connect(dialog, &QFileDialog::fileSelected, this, &ChatWindow::send_file);
  dialog->open();
}

void ChatWindow::send_file(const QString& path) {
  ConversationId conv = current();
  QFileInfo info(path);
  if (!conv || !info.isFile()) return;
  QString upload = messages_.add_upload(info.fileName(), static_cast<quint64>(info.size()));
  scroll_to_bottom();
  QPointer<ChatWindow> self(this);
  auto progress = [self, upload](uint64_t done, uint64_t total) {
    QMetaObject::invokeMethod(
        qApp,
        [self, upload, done, total] {
          if (!self) return;
          int row = self->messages_.row_of(upload);
          if (auto* r = self->messages_.mutable_at(row)) {
            r->done = done;
            r->total = total;
            self->messages_.row_changed(row);
          }
        },
        Qt::QueuedConnection);
  };
  const std::atomic<bool>* stopping = backend_->stopping();
  backend_->remote(
      this,
      [conv, path, progress, stopping](Client& c) -> Result<Message> {
        FileOptions fo;
        QImage img(path);  // off the GUI thread: images can be large
        if (!img.isNull()) {
          fo.width = static_cast<uint32_t>(img.width());
          fo.height = static_cast<uint32_t>(img.height());
          fo.thumbnail = thumbnail_of(img);
        }
        auto id = c.send_file(conv, path.toStdString(), fo, progress, stopping);
        if (!id.ok()) return id.error();
        return c.message(conv, *id);
      },
      [this, upload](Result<Message> m) {
        int row = messages_.row_of(upload);
        if (!m.ok()) {
          if (auto* r = messages_.mutable_at(row)) {
            r->transferring = false;
            r->error = QString::fromStdString(m.error().message);
            r->message.status = MessageStatus::kFailed;
            messages_.row_changed(row);
          }
          return;
        }
        messages_.remove(upload);
        messages_.upsert(*m);
        scroll_to_bottom();
        refresh_timer_.start();
      });
}

void ChatWindow::download(int row, int index) {
  MessageRow* r = messages_.mutable_at(row);
  if (!r || r->transferring || index >= static_cast<int>(r->message.attachments.size())) return;
  const Attachment& a = r->message.attachments[static_cast<size_t>(index)];
  if (a.stored) {
    // The plaintext goes only where the user says.
    QString folder = QStandardPaths::writableLocation(QStandardPaths::DownloadLocation);
    QString suggested =
        QString::fromStdString(app::unused_path(folder.toStdString(), a.file_name).string());
    QString id = QString::fromStdString(r->message.id);
    auto* dialog = new QFileDialog(this, tr("Save file"), suggested);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setAcceptMode(QFileDialog::AcceptSave);
    dialog->selectFile(suggested);
    connect(dialog, &QFileDialog::fileSelected, this, [this, id, index](const QString& path) {
      int rr = messages_.row_of(id);
      if (rr >= 0) save_attachment(rr, index, path, /*open_after=*/true);
    });
    dialog->open();
    return;
  }
  r->transferring = true;
  r->done = 0;
  r->total = a.size;
  r->error.clear();
  messages_.row_changed(row);
  QString id = QString::fromStdString(r->message.id);
  ConversationId conv = current();
  QPointer<ChatWindow> self(this);
  auto progress = [self, id](uint64_t done, uint64_t total) {
    QMetaObject::invokeMethod(
        qApp,
        [self, id, done, total] {
          if (!self) return;
          int rr = self->messages_.row_of(id);
          if (auto* m = self->messages_.mutable_at(rr)) {
            m->done = done;
            m->total = total;
            self->messages_.row_changed(rr);
          }
        },
        Qt::QueuedConnection);
  };
  const std::atomic<bool>* stopping = backend_->stopping();
  backend_->remote(
      this,
      [conv, mid = id.toStdString(), index, progress, stopping](Client& c) -> Result<Message> {
        auto done =
            c.download_attachment(conv, mid, static_cast<uint32_t>(index), progress, stopping);
        if (!done.ok()) return done.error();
        return c.message(conv, mid);
      },
      [this, id](Result<Message> m) {
        int rr = messages_.row_of(id);
        if (auto* r2 = messages_.mutable_at(rr)) {
          r2->transferring = false;
          if (!m.ok()) r2->error = QString::fromStdString(m.error().message);
          messages_.row_changed(rr);
        }
        if (m.ok()) messages_.upsert(*m);
      });
}

void ChatWindow::save_attachment(int row, int index, const QString& destination, bool open_after) {
  MessageRow* r = messages_.mutable_at(row);
  if (!r || r->transferring || index >= static_cast<int>(r->message.attachments.size())) return;
  r->transferring = true;
  r->done = 0;
  r->total = r->message.attachments[static_cast<size_t>(index)].size;
  r->error.clear();
  messages_.row_changed(row);
  QString id = QString::fromStdString(r->message.id);
  ConversationId conv = current();
  const std::atomic<bool>* stopping = backend_->stopping();
  backend_->local(
      this,
      [conv, mid = id.toStdString(), index, to = destination.toStdString(), stopping](Client& c) {
        return c.save_attachment(conv, mid, static_cast<uint32_t>(index), to, {}, stopping);
      },
      [this, id, destination, open_after](Status s) {
        int rr = messages_.row_of(id);
        if (auto* r2 = messages_.mutable_at(rr)) {
          r2->transferring = false;
          if (!s.ok()) r2->error = QString::fromStdString(s.error().message);
          messages_.row_changed(rr);
        }
        if (s.ok() && open_after) QDesktopServices::openUrl(QUrl::fromLocalFile(destination));
      });
}

void ChatWindow::load_images(int first, int last) {
  // Larger pictures show their thumbnail; saving them still works.
  constexpr uint64_t kMaxImageBytes = 20 << 20;
  for (int rr = std::max(first, 0); rr <= last; ++rr) {
    MessageRow* r = messages_.mutable_at(rr);
    if (!r || r->uploading || r->message.deleted) continue;
    for (size_t i = 0; i < r->message.attachments.size(); ++i) {
      const Attachment& a = r->message.attachments[i];
      int index = static_cast<int>(i);
      if (!a.stored || !is_image(a) || a.size > kMaxImageBytes || r->images.contains(index))
        continue;
      r->images.insert(index, QImage());  // asked for: not again while it loads
      QString id = QString::fromStdString(r->message.id);
      backend_->local(
          this,
          [conv = r->message.conversation, mid = r->message.id, index](Client& c) {
            auto bytes = c.read_attachment(conv, mid, static_cast<uint32_t>(index), kMaxImageBytes);
            if (!bytes.ok()) return QImage();
            return QImage::fromData(bytes->data(), static_cast<int>(bytes->size()));
          },
          [this, id, index](QImage image) {
            int row = messages_.row_of(id);
            MessageRow* target = messages_.mutable_at(row);
            if (!target || image.isNull()) return;
            target->images[index] = std::move(image);
            messages_.row_changed(row);
          });
    }
  }
}

bool ChatWindow::eventFilter(QObject* watched, QEvent* event) {
  if (watched == message_list_->viewport() && event->type() == QEvent::Resize) {
    // A row's height depends on the width (the text wraps), but a list view flowing top to
    // bottom lays its rows out again only when its height changes: when search (or the window)
    // changes the width, rows kept their old heights, leaving gaps between the bubbles or
    // letting them overlap. Lay them out once the resize is done, still at the bottom if the
    // chat was.
    auto* resize = static_cast<QResizeEvent*>(event);
    if (resize->size().width() != resize->oldSize().width() && !relayout_pending_) {
      relayout_pending_ = true;
      bool bottom = near_bottom();
      QTimer::singleShot(0, message_list_, [this, bottom] {
        relayout_pending_ = false;
        message_list_->doItemsLayout();
        if (bottom) message_list_->scrollToBottom();
      });
    }
  }
  if (watched == message_list_->viewport() && event->type() == QEvent::MouseButtonRelease) {
    auto* me = static_cast<QMouseEvent*>(event);
    QModelIndex index = message_list_->indexAt(me->position().toPoint());
    if (index.isValid() && me->button() == Qt::LeftButton) {
      int a = message_delegate_->attachment_at(index, message_list_->visualRect(index),
                                               me->position().toPoint());
      if (a >= 0) download(index.row(), a);
    }
  }
  return QWidget::eventFilter(watched, event);
}

void ChatWindow::message_menu(const QPoint& pos) {
  QModelIndex index = message_list_->indexAt(pos);
  const MessageRow* row = messages_.at(index.row());
  if (!row || row->uploading || row->message.kind != MessageKind::kText) return;
  Message m = row->message;
  ConversationId conv = current();
  auto* menu = new QMenu(this);
  menu->setAttribute(Qt::WA_DeleteOnClose);
  if (!m.text.empty() && !m.deleted)
    menu->addAction(tr("Copy text"), this,
                    [m] { QApplication::clipboard()->setText(QString::fromStdString(m.text)); });
  if (m.outgoing) {
    menu->addAction(theme::icon(theme::Icon::kInfo), tr("Message info"), this,
                    [this, id = m.id] { show_message_info(QString::fromStdString(id)); });
    if (!m.deleted && !m.text.empty()) {
      menu->addAction(theme::icon(theme::Icon::kEdit), tr("Edit"), this, [this, m, conv] {
        auto* dlg = new QInputDialog(this);
        dlg->setWindowTitle(tr("Edit message"));
        dlg->setLabelText(tr("New text:"));
        dlg->setTextValue(QString::fromStdString(m.text));
        dlg->setAttribute(Qt::WA_DeleteOnClose);
        connect(dlg, &QInputDialog::textValueSelected, this, [this, m, conv](const QString& t) {
          backend_->local(
              this,
              [conv, id = m.id, text = t.toStdString()](Client& c) {
                return c.edit_message(conv, id, text);
              },
              [this](Status s) {
                if (!s.ok())
                  QMessageBox::warning(this, tr("Not edited"),
                                       QString::fromStdString(s.error().message));
              });
        });
        dlg->open();
      });
    }
    if (!m.deleted)
      menu->addAction(tr("Delete for everyone"), this, [this, m, conv] {
        backend_->local(
            this, [conv, id = m.id](Client& c) { return c.delete_for_everyone(conv, id); },
            [this](Status s) {
              if (!s.ok())
                QMessageBox::warning(this, tr("Not deleted"),
                                     QString::fromStdString(s.error().message));
            });
      });
  }
  if (menu->actions().isEmpty()) {
    delete menu;
    return;
  }
  menu->popup(message_list_->viewport()->mapToGlobal(pos));
}

void ChatWindow::set_search_visible(bool visible) {
  search_panel_->setVisible(visible);
  if (search_button_->isChecked() != visible) search_button_->setChecked(visible);
  if (visible) search_field_->setFocus();
}

void ChatWindow::run_search(const QString& text) {
  if (text.trimmed().isEmpty()) {
    search_results_->clear();
    search_status_->clear();
    return;
  }
  SearchQuery q;
  q.text = text.toStdString();
  q.limit = 50;
  q.snippet_bytes = 120;
  backend_->local(
      this, [q](Client& c) { return c.search(q); },
      [this, text](Result<SearchPage> page) {
        if (search_field_->text() != text) return;  // typed on meanwhile
        search_results_->clear();
        if (!page.ok()) {
          search_status_->setText(QString::fromStdString(page.error().message));
          return;
        }
        size_t n = page->hits.size();
        search_status_->setText(
            n == 0   ? tr("No messages found")
            : n == 1 ? tr("1 message")
                     : tr("%1%2 messages").arg(n).arg(page->next_cursor.empty() ? "" : "+"));
        for (const auto& hit : page->hits) {
          int crow = conversations_.row_of(hit.conversation);
          const Conversation* c = conversations_.at(crow);
          QString where = c ? QString::fromStdString(c->title) : tr("Conversation");
          QString who = QString::fromStdString(hit.sender) == backend_->account()
                            ? tr("You")
                            : names_.value(QString::fromStdString(hit.sender),
                                           QString::fromStdString(hit.sender.substr(0, 8)));
          QString when = QString::fromStdString(app::format_time(hit.sort_ms, app::now_ms()));
          auto* item = new QListWidgetItem;
          item->setData(Qt::UserRole, QVariant::fromValue<qint64>(hit.conversation));
          item->setData(Qt::UserRole + 1, QString::fromStdString(hit.message_id));
          item->setData(Qt::DisplayRole + 100, QString::fromStdString(hit.snippet));
          auto* w = new QWidget;
          auto* wl = new QVBoxLayout(w);
          wl->setContentsMargins(16, 10, 16, 10);
          wl->setSpacing(3);
          // The author only where it is not obvious: own messages, and groups.
          bool direct = c && c->kind == ConversationKind::kDirect;
          QString by = who == tr("You") || !direct ? " · " + who.toHtmlEscaped() : QString();
          auto* top = new QLabel(QString("<b>%1</b><span style='color:#6b7280'>%2 · %3</span>")
                                     .arg(where.toHtmlEscaped(), by, when.toHtmlEscaped()));
          top->setTextFormat(Qt::RichText);
          wl->addWidget(top);
          auto* snippet = new QLabel(highlighted(hit));
          snippet->setObjectName("searchSnippet");
          snippet->setTextFormat(Qt::RichText);
          snippet->setWordWrap(true);
          wl->addWidget(snippet);
          w->setAttribute(Qt::WA_TransparentForMouseEvents);
          // Word-wrapped labels: the height follows from the list's width.
          int width = std::max(search_results_->viewport()->width(), 300);
          item->setSizeHint(QSize(width, w->layout()->heightForWidth(width)));
          search_results_->addItem(item);
          search_results_->setItemWidget(item, w);
        }
      });
}

void ChatWindow::jump_to(ConversationId conversation, const QString& message_id) {
  // The search pages older history in until the message shows up. Each pending page holds the
  // function; the function itself only holds a weak reference, so no cycle keeps it alive.
  auto find = std::make_shared<std::function<void(int)>>();
  std::weak_ptr<std::function<void(int)>> weak = find;
  *find = [this, message_id, weak](int pages_left) {
    int row = messages_.row_of(message_id);
    if (row >= 0) {
      QTimer::singleShot(0, message_list_, [this, message_id] {
        int r = messages_.row_of(message_id);
        if (r < 0) return;
        message_list_->scrollTo(messages_.index(r), QAbstractItemView::PositionAtCenter);
        messages_.set_highlight(message_id);
        highlight_timer_.start();
      });
      return;
    }
    if (pages_left == 0 || messages_.cursor().empty()) return;
    auto self = weak.lock();
    if (!self) return;
    load_older([self, pages_left] { (*self)(pages_left - 1); });
  };
  if (conversation == current())
    (*find)(40);
  else
    open_conversation(conversation, [find] { (*find)(40); });
}

void ChatWindow::show_settings() {
  auto* d = new SettingsDialog(backend_, settings_, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  d->open();
}

void ChatWindow::show_change_passphrase() {
  auto* d = new ChangePassphraseDialog(backend_, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  d->open();
}

namespace {

// A question with one action button (named `action_name`) beside Cancel, shown with open().
QMessageBox* ask(QWidget* parent, const char* name, const QString& title, const QString& text,
                 const QString& details, const QString& action, const char* action_name,
                 QMessageBox::ButtonRole role) {
  auto* box = new QMessageBox(QMessageBox::Warning, title, text, QMessageBox::Cancel, parent);
  box->setObjectName(name);
  box->setInformativeText(details);
  box->setAttribute(Qt::WA_DeleteOnClose);
  QPushButton* go = box->addButton(action, role);
  go->setObjectName(action_name);
  if (role == QMessageBox::DestructiveRole) go->setProperty("danger", true);
  box->setDefaultButton(QMessageBox::Cancel);
  return box;
}

}  // namespace

void ChatWindow::log_out() {
  QString who = QString::fromStdString(app::at_handle(backend_->handle().toStdString()));
  auto* box = ask(this, "confirmLogOut", tr("Log out"),
                  tr("Log out of %1 on this computer?").arg(who),
                  tr("This computer leaves the account and its copy of your conversations is "
                     "erased. Your other devices keep everything."),
                  tr("Log out"), "confirmLogOutButton", QMessageBox::AcceptRole);
  connect(box->findChild<QPushButton*>("confirmLogOutButton"), &QPushButton::clicked, this,
          [this, who] {
            backend_->remote(
                this, [](Client& c) { return c.unlink_this_device(); },
                [this, who](Status s) {
                  if (s.ok()) {
                    emit account_closed(tr("Logged out: this computer left %1, and its copy of "
                                           "the conversations was erased.")
                                            .arg(who));
                    return;
                  }
                  if (s.code() != ErrorCode::kForbidden) {
                    QMessageBox::warning(this, tr("Not logged out"),
                                         QString::fromStdString(s.error().message));
                    return;
                  }
                  // The relay keeps an account only while it has a device.
                  auto* only = ask(this, "onlyDeviceBox", tr("Log out"),
                                   tr("This computer is the only device of %1.").arg(who),
                                   tr("Logging it out would leave the account with no device. "
                                      "To leave sotto, delete the account instead."),
                                   tr("Delete account…"), "offerDeleteAccountButton",
                                   QMessageBox::AcceptRole);
                  connect(only->findChild<QPushButton*>("offerDeleteAccountButton"),
                          &QPushButton::clicked, this, &ChatWindow::delete_account);
                  only->open();
                });
          });
  box->open();
}

void ChatWindow::delete_account() {
  QString who = QString::fromStdString(app::at_handle(backend_->handle().toStdString()));
  auto* box = ask(
      this, "confirmDeleteAccount", tr("Delete account"),
      tr("Delete the account %1? This cannot be undone.").arg(who),
      tr("Every device of %1 is logged out, the relay forgets the account, and anyone may "
         "register %1 again. Messages you sent stay with the people who received them. Your "
         "conversations on this computer are erased.")
          .arg(who),
      tr("Delete account"), "deleteAccountButton", QMessageBox::DestructiveRole);
  connect(box->findChild<QPushButton*>("deleteAccountButton"), &QPushButton::clicked, this,
          [this, who] {
            backend_->remote(
                this, [](Client& c) { return c.delete_account(); },
                [this, who](Status s) {
                  if (!s.ok()) {
                    QMessageBox::warning(this, tr("Account not deleted"),
                                         QString::fromStdString(s.error().message));
                    return;
                  }
                  emit account_closed(tr("The account %1 was deleted.").arg(who));
                });
          });
  box->open();
}

void ChatWindow::show_new_group() {
  auto* d = new NewGroupDialog(backend_, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  connect(d, &NewGroupDialog::created, this, [this](ConversationId c) {
    refresh_conversations();
    open_conversation(c);
  });
  d->open();
}

void ChatWindow::show_message_info(const QString& message_id) {
  auto* d = new MessageInfoDialog(backend_, current(), message_id, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  d->open();
}

void ChatWindow::show_info() {
  const Conversation* c = conversations_.at(conversations_.row_of(current()));
  if (!c) return;
  auto* d = new ConversationInfoDialog(backend_, *c, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  connect(d, &ConversationInfoDialog::show_safety_number, this, &ChatWindow::show_safety_number);
  d->open();
}

void ChatWindow::show_safety_number(const QString& account, const QString& handle) {
  backend_->local(
      this, [a = account.toStdString()](Client& c) { return c.safety_number(a); },
      [this, account, handle](Result<SafetyNumber> sn) {
        if (!sn.ok()) {
          auto* box = new QMessageBox(
              QMessageBox::Information, tr("Safety number"),
              sn.code() == ErrorCode::kNotFound
                  ? tr("There is no safety number with %1 until you have exchanged a message.")
                        .arg(handle)
                  : QString::fromStdString(sn.error().message),
              QMessageBox::Close, this);
          box->setAttribute(Qt::WA_DeleteOnClose);
          box->open();
          return;
        }
        auto* d = new SafetyNumberDialog(backend_, account, handle, *sn, this);
        d->setAttribute(Qt::WA_DeleteOnClose);
        d->open();
      });
}

}  // namespace sotto::desktop
