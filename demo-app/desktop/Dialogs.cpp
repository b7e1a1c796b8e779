#include "Dialogs.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QGridLayout>
#include <QHeaderView>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QListWidget>
#include <QPushButton>
#include <QSettings>
#include <QSignalBlocker>
#include <QSet>
#include <QTabWidget>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <algorithm>

#ifdef SOTTO_HAVE_QRENCODE
#include <qrencode.h>
#endif

#include "AppSupport.h"
#include "Backend.h"
#include "Theme.h"

namespace sotto::desktop {
namespace {

QLabel* muted(const QString& text) {
  auto* l = new QLabel(text);
  l->setWordWrap(true);
  l->setProperty("muted", true);
  return l;
}

QLabel* heading(const QString& text) {
  auto* l = new QLabel(text);
  l->setStyleSheet("font-weight: bold; font-size: 11pt;");
  return l;
}

const std::pair<uint32_t, const char*> kTimers[] = {
    {0, "Off"},       {30, "30 seconds"}, {300, "5 minutes"},
    {3600, "1 hour"}, {86400, "1 day"},   {7 * 86400, "1 week"},
};

}  // namespace

// ---- safety number -------------------------------------------------------------------------

QImage qr_code(const Bytes& data) {
#ifdef SOTTO_HAVE_QRENCODE
  // The level of error correction people's phones read best at arm's length: M (15 %).
  QRcode* qr = QRcode_encodeData(static_cast<int>(data.size()), data.data(), 0, QR_ECLEVEL_M);
  if (!qr) return {};
  constexpr int kQuiet = 4;
  int side = qr->width + 2 * kQuiet;
  QImage img(side, side, QImage::Format_RGB32);
  img.fill(Qt::white);
  for (int y = 0; y < qr->width; ++y)
    for (int x = 0; x < qr->width; ++x)
      if (qr->data[y * qr->width + x] & 1) img.setPixel(x + kQuiet, y + kQuiet, qRgb(0, 0, 0));
  QRcode_free(qr);
  return img;
#else
  (void)data;
  return {};
#endif
}

SafetyNumberDialog::SafetyNumberDialog(Backend* backend, const QString& account,
                                       const QString& handle, const SafetyNumber& number,
                                       QWidget* parent)
    : QDialog(parent) {
  QString digits = QString::fromStdString(number.digits);
  setObjectName("safetyNumberDialog");
  setWindowTitle(tr("Safety number with %1").arg(handle));
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(28, 24, 28, 20);
  l->setSpacing(14);
  auto* top = new QHBoxLayout;
  auto* shield = new QLabel;
  shield->setPixmap(theme::icon(theme::Icon::kShield, theme::kAccent, 40).pixmap(40, 40));
  top->addWidget(shield);
  auto* title = new QLabel(tr("Verify %1").arg(handle));
  title->setProperty("title", true);
  top->addWidget(title, 1);
  l->addLayout(top);
  l->addWidget(muted(tr("Compare these numbers with the ones %1 sees, in person or on a call, or "
                        "scan each other's code. If they match, your conversation is end-to-end encrypted with nobody in "
                        "the middle.")
                         .arg(handle)));
  auto* grid_frame = new QFrame;
  grid_frame->setStyleSheet("background: #f1f3f6; border-radius: 12px;");
  auto* grid = new QGridLayout(grid_frame);
  grid->setContentsMargins(24, 18, 24, 18);
  grid->setHorizontalSpacing(26);
  grid->setVerticalSpacing(10);
  for (int i = 0; i < 12 && (i + 1) * 5 <= digits.size(); ++i) {
    auto* g = new QLabel(digits.mid(i * 5, 5));
    g->setObjectName(QString("safetyGroup%1").arg(i));
    g->setStyleSheet("font-family: 'DejaVu Sans Mono'; font-size: 17pt; color: #1c1e21;");
    g->setAlignment(Qt::AlignCenter);
    grid->addWidget(g, i / 4, i % 4);
  }
  l->addWidget(grid_frame);
  QImage code = qr_code(number.scannable);
  if (!code.isNull()) {
    // Whole pixels per module, about 200 px in all, so every module stays sharp.
    int scale = std::max(1, 200 / code.width());
    auto* qr = new QLabel;
    qr->setObjectName("safetyQr");
    qr->setPixmap(QPixmap::fromImage(
        code.scaled(code.size() * scale, Qt::IgnoreAspectRatio, Qt::FastTransformation)));
    qr->setToolTip(tr("Or let %1 scan this code with sotto").arg(handle));
    l->addWidget(qr, 0, Qt::AlignHCenter);
  } else {
    auto* none = muted(tr("This build of sotto has no QR encoder (libqrencode): compare the "
                          "digits instead."));
    none->setObjectName("safetyQrMissing");
    none->setAlignment(Qt::AlignHCenter);
    l->addWidget(none);
  }
  l->addWidget(
      muted(tr("If they differ, someone may be intercepting: do not share anything "
               "sensitive until you know why (a new phone changes the number too).")));
  // Checked once the user compared the number; a changed key unchecks it by itself (the SDK
  // keeps the number that was verified).
  auto* verified = new QCheckBox(tr("I compared them: %1 is verified").arg(handle));
  verified->setObjectName("verifiedCheck");
  verified->setEnabled(false);  // until the current state is known
  l->addWidget(verified);
  const std::string a = account.toStdString();
  backend->local(
      this, [a](Client& c) { return c.verified(a); },
      [verified](Result<bool> is) {
        verified->setChecked(is.ok() && *is);
        verified->setEnabled(true);
      });
  connect(verified, &QCheckBox::toggled, this, [this, backend, a, verified](bool on) {
    if (!verified->isEnabled()) return;  // the initial state being shown
    backend->local(
        this, [a, on](Client& c) { return c.set_verified(a, on); },
        [verified, on](Status s) {
          if (s.ok()) return;
          QSignalBlocker quiet(verified);
          verified->setChecked(!on);
          verified->setToolTip(QString::fromStdString(s.error().message));
        });
  });
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  l->addWidget(buttons);
  setMinimumWidth(520);
}

// ---- message info --------------------------------------------------------------------------

namespace {

QString full_time(uint64_t ms) {
  return QLocale().toString(QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(ms)),
                            QLocale::LongFormat);
}

QString status_text(MessageStatus s) {
  QString w = QString::fromStdString(app::status_word(s));
  return w.isEmpty() ? w : w.left(1).toUpper() + w.mid(1);
}

}  // namespace

MessageInfoDialog::MessageInfoDialog(Backend* backend, ConversationId conversation,
                                     const QString& message_id, QWidget* parent)
    : QDialog(parent), backend_(backend), conversation_(conversation), message_id_(message_id) {
  setObjectName("messageInfoDialog");
  setWindowTitle(tr("Message info"));
  setMinimumSize(460, 360);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(24, 20, 24, 16);
  l->setSpacing(10);
  text_ = new QLabel;
  text_->setObjectName("messageInfoText");
  text_->setWordWrap(true);
  text_->setTextFormat(Qt::PlainText);
  text_->setStyleSheet("background: #dbeafe; border-radius: 10px; padding: 10px 12px;");
  l->addWidget(text_);
  auto* form = new QFormLayout;
  form->setHorizontalSpacing(16);
  sent_ = new QLabel;
  sent_->setObjectName("messageInfoSent");
  status_ = new QLabel;
  status_->setObjectName("messageInfoStatus");
  form->addRow(tr("Sent"), sent_);
  form->addRow(tr("Status"), status_);
  l->addLayout(form);
  l->addWidget(heading(tr("Recipients")));
  receipts_ = new QTreeWidget;
  receipts_->setObjectName("receiptList");
  receipts_->setRootIsDecorated(false);
  receipts_->setHeaderLabels({tr("Name"), tr("Status"), tr("Time")});
  receipts_->setIconSize(QSize(24, 24));
  receipts_->header()->setStretchLastSection(true);
  l->addWidget(receipts_, 1);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  l->addWidget(buttons);
  connect(backend_, &Backend::message_status, this,
          [this](ConversationId c, const QString& id, MessageStatus) {
            if (c == conversation_ && id == message_id_) reload();
          });
  reload();
}

void MessageInfoDialog::reload() {
  struct Info {
    Result<Message> message = make_error(ErrorCode::kNotFound, "");
    Result<std::vector<Receipt>> receipts = make_error(ErrorCode::kNotFound, "");
    Result<Conversation> conversation = make_error(ErrorCode::kNotFound, "");
    std::optional<GroupInfo> group;
    std::vector<Contact> contacts;
  };
  backend_->local(
      this,
      [conv = conversation_, id = message_id_.toStdString()](Client& c) {
        Info info;
        info.message = c.message(conv, id);
        info.receipts = c.receipts(conv, id);
        info.conversation = c.conversation(conv);
        if (info.conversation.ok() && info.conversation->kind == ConversationKind::kGroup)
          if (auto g = c.group(conv); g.ok()) info.group = *g;
        if (auto list = c.contacts(); list.ok()) info.contacts = *list;
        return info;
      },
      [this](Info info) {
        if (!info.message.ok()) {
          status_->setText(QString::fromStdString(info.message.error().message));
          return;
        }
        const Message& m = *info.message;
        text_->setText(m.deleted ? tr("This message was deleted")
                       : !m.text.empty() ? QString::fromStdString(m.text)
                       : !m.attachments.empty()
                           ? QString::fromStdString(m.attachments[0].file_name)
                           : QString());
        sent_->setText(full_time(m.sent_ms));
        status_->setText(status_text(m.status));
        // Accounts by handle: contacts, the group's members, a direct chat's peer.
        QHash<QString, QString> names;
        for (const auto& c : info.contacts)
          names[QString::fromStdString(c.account)] = QString::fromStdString(app::at_handle(c.handle));
        std::vector<std::string> expected;  // who it went to
        if (info.group) {
          for (const auto& member : info.group->members) {
            QString acc = QString::fromStdString(member.account);
            if (!member.handle.empty())
              names[acc] = QString::fromStdString(app::at_handle(member.handle));
            if (acc != backend_->account()) expected.push_back(member.account);
          }
        } else if (info.conversation.ok()) {
          expected.push_back(info.conversation->peer);
          if (!names.contains(QString::fromStdString(info.conversation->peer)))
            names[QString::fromStdString(info.conversation->peer)] =
                QString::fromStdString(info.conversation->title);
        }
        auto name_of = [&](const std::string& account) {
          QString acc = QString::fromStdString(account);
          return names.value(acc, acc.left(8));
        };
        receipts_->clear();
        QSet<QString> answered;
        auto add = [&](const std::string& account, const QString& status, const QString& when) {
          QString n = name_of(account);
          auto* item = new QTreeWidgetItem({n, status, when});
          item->setIcon(0, theme::avatar(n, QString::fromStdString(account), 24));
          item->setData(0, Qt::UserRole, QString::fromStdString(account));
          receipts_->addTopLevelItem(item);
        };
        if (info.receipts.ok())
          for (const auto& r : *info.receipts) {
            answered.insert(QString::fromStdString(r.account));
            add(r.account, status_text(r.status), full_time(r.at_ms));
          }
        // Those with no receipt yet, as far as the count of recipients says there are any.
        if (!info.receipts.ok() || info.receipts->size() < m.recipients)
          for (const auto& account : expected)
            if (!answered.contains(QString::fromStdString(account)))
              add(account, tr("Not delivered yet"), QString());
        receipts_->resizeColumnToContents(0);
        receipts_->resizeColumnToContents(1);
      });
}

// ---- settings ------------------------------------------------------------------------------

SettingsDialog::SettingsDialog(Backend* backend, QSettings* settings, QWidget* parent)
    : QDialog(parent), backend_(backend), settings_(settings) {
  setObjectName("settingsDialog");
  setWindowTitle(tr("Settings"));
  setMinimumSize(520, 460);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(20, 16, 20, 16);
  auto* tabs = new QTabWidget;
  l->addWidget(tabs);

  // Account.
  auto* account = new QWidget;
  auto* al = new QVBoxLayout(account);
  al->setSpacing(10);
  auto* who = new QHBoxLayout;
  auto* av = new QLabel;
  av->setPixmap(theme::avatar(backend->handle(), backend->account(), 64));
  who->addWidget(av);
  auto* names = new QVBoxLayout;
  auto* handle = new QLabel(app::at_handle(backend->handle().toStdString()).c_str());
  handle->setProperty("title", true);
  names->addWidget(handle);
  names->addWidget(muted(tr("Account %1").arg(backend->account())));
  who->addLayout(names, 1);
  al->addLayout(who);
  al->addStretch();

  // Privacy.
  auto* privacy = new QWidget;
  auto* pl = new QVBoxLayout(privacy);
  pl->setSpacing(8);
  auto* hide = new QCheckBox(tr("Hide when I am online"));
  hide->setObjectName("hidePresence");
  hide->setChecked(settings_->value("hide_presence", false).toBool());
  pl->addWidget(hide);
  pl->addWidget(muted(tr("Others see you offline, with no last-seen time.")));
  pl->addSpacing(8);
  auto* receipts = new QCheckBox(tr("Send read receipts"));
  receipts->setObjectName("readReceipts");
  receipts->setChecked(settings_->value("read_receipts", true).toBool());
  pl->addWidget(receipts);
  pl->addWidget(
      muted(tr("When off, others do not see when you have read their messages. "
               "Delivered receipts are always sent.")));
  pl->addStretch();
  connect(hide, &QCheckBox::toggled, this, [this](bool on) {
    settings_->setValue("hide_presence", on);
    backend_->local(
        this, [on](Client& c) { return c.set_presence_hidden(on); }, [](Status) {});
  });
  connect(receipts, &QCheckBox::toggled, this, [this](bool on) {
    settings_->setValue("read_receipts", on);
    backend_->local(
        this, [on](Client& c) { return c.set_read_receipts(on); }, [](Status) {});
  });

  // Devices.
  auto* devices = new QWidget;
  auto* dl = new QVBoxLayout(devices);
  dl->setSpacing(8);
  devices_ = new QListWidget;
  devices_->setObjectName("deviceList");
  devices_->setStyleSheet("QListWidget::item { padding: 8px; border-bottom: 1px solid #eef0f3; }");
  dl->addWidget(devices_, 1);
  auto* remove = new QPushButton(tr("Remove selected device"));
  remove->setProperty("danger", true);
  remove->setEnabled(false);
  connect(devices_, &QListWidget::currentItemChanged, this, [remove](QListWidgetItem* item) {
    // This device leaves by being removed from another one.
    remove->setEnabled(item && !item->data(Qt::UserRole + 1).toBool());
  });
  dl->addWidget(remove, 0, Qt::AlignLeft);
  dl->addWidget(heading(tr("Link a device")));
  dl->addWidget(
      muted(tr("On the new device choose “link this device”, then type here the text it "
               "shows.")));
  auto* row = new QHBoxLayout;
  approve_text_ = new QLineEdit;
  approve_text_->setObjectName("approveText");
  approve_text_->setPlaceholderText("XXXX-XXXX-FFFF-FFFF-…");
  row->addWidget(approve_text_, 1);
  auto* approve = new QPushButton(tr("Link"));
  approve->setProperty("primary", true);
  row->addWidget(approve);
  dl->addLayout(row);
  devices_status_ = muted("");
  dl->addWidget(devices_status_);

  tabs->addTab(account, tr("Account"));
  tabs->addTab(privacy, tr("Privacy"));
  tabs->addTab(devices, tr("Devices"));

  connect(remove, &QPushButton::clicked, this, [this] {
    auto* item = devices_->currentItem();
    if (!item) return;
    uint32_t id = item->data(Qt::UserRole).toUInt();
    devices_status_->setText(tr("Removing…"));
    backend_->remote(
        this, [id](Client& c) { return c.remove_device(id); },
        [this](Status s) {
          devices_status_->setText(s.ok() ? tr("Removed.")
                                          : QString::fromStdString(s.error().message));
          refresh_devices();
        });
  });
  connect(approve, &QPushButton::clicked, this, [this] {
    std::string text = approve_text_->text().trimmed().toStdString();
    if (text.empty()) return;
    devices_status_->setText(tr("Linking…"));
    backend_->remote(
        this, [text](Client& c) { return c.approve_link(text); },
        [this](Status s) {
          devices_status_->setText(s.ok() ? tr("Approved: the new device joins this account.")
                                          : QString::fromStdString(s.error().message));
          if (s.ok()) approve_text_->clear();
          refresh_devices();
        });
  });
  connect(backend_, &Backend::devices_changed, this, &SettingsDialog::refresh_devices);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  l->addWidget(buttons);
  refresh_devices();
}

void SettingsDialog::refresh_devices() {
  backend_->remote(
      this, [](Client& c) { return c.devices(); },
      [this](Result<std::vector<DeviceInfo>> list) {
        devices_->clear();
        if (!list.ok()) {
          devices_status_->setText(QString::fromStdString(list.error().message));
          return;
        }
        for (const auto& d : *list) {
          QString text = QString::fromStdString(
              d.name.empty() ? "Device " + std::to_string(d.device_id) : d.name);
          QStringList bits;
          if (d.this_device) bits << tr("this device");
          if (d.connected) bits << tr("connected");
          bits << tr("linked %1")
                      .arg(QString::fromStdString(app::format_time(d.created_ms, app::now_ms())));
          auto* item = new QListWidgetItem(text + "\n" + bits.join(" · "));
          item->setData(Qt::UserRole, d.device_id);
          item->setData(Qt::UserRole + 1, d.this_device);
          item->setIcon(
              theme::icon(theme::Icon::kShield, d.connected ? theme::kOnline : theme::kMuted, 24));
          devices_->addItem(item);
        }
      });
}

// ---- passphrase ----------------------------------------------------------------------------

ChangePassphraseDialog::ChangePassphraseDialog(Backend* backend, QWidget* parent)
    : QDialog(parent), backend_(backend) {
  setObjectName("changePassphraseDialog");
  setWindowTitle(tr("Change passphrase"));
  setMinimumWidth(420);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(24, 20, 24, 16);
  l->setSpacing(10);
  l->addWidget(heading(tr("New passphrase")));
  l->addWidget(muted(tr("It opens this profile on this computer from now on; the old one no "
                        "longer does. Nobody can recover it for you.")));
  passphrase_ = new QLineEdit;
  passphrase_->setObjectName("newPassphrase");
  passphrase_->setEchoMode(QLineEdit::Password);
  passphrase_->setPlaceholderText(tr("New passphrase"));
  l->addWidget(passphrase_);
  confirm_ = new QLineEdit;
  confirm_->setObjectName("newPassphraseConfirm");
  confirm_->setEchoMode(QLineEdit::Password);
  confirm_->setPlaceholderText(tr("New passphrase again"));
  l->addWidget(confirm_);
  error_ = new QLabel;
  error_->setObjectName("passphraseError");
  error_->setProperty("error", true);
  error_->setWordWrap(true);
  error_->hide();
  l->addWidget(error_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel);
  change_ = buttons->addButton(tr("Change passphrase"), QDialogButtonBox::AcceptRole);
  change_->setObjectName("changePassphraseButton");
  change_->setProperty("primary", true);
  change_->setDefault(true);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(change_, &QPushButton::clicked, this, &ChangePassphraseDialog::change);
  connect(passphrase_, &QLineEdit::returnPressed, confirm_, qOverload<>(&QWidget::setFocus));
  connect(confirm_, &QLineEdit::returnPressed, this, &ChangePassphraseDialog::change);
  l->addWidget(buttons);
}

void ChangePassphraseDialog::change() {
  auto fail = [this](const QString& why) {
    error_->setText(why);
    error_->show();
  };
  if (passphrase_->text().isEmpty()) return fail(tr("Enter the new passphrase."));
  if (passphrase_->text() != confirm_->text()) return fail(tr("The two passphrases differ."));
  error_->hide();
  SecureBytes secret = SecureBytes::from_string(passphrase_->text().toStdString());
  passphrase_->clear();
  confirm_->clear();
  change_->setEnabled(false);
  change_->setText(tr("Changing…"));
  backend_->local(
      this, [secret](Client& c) { return c.profile().change_passphrase(secret); },
      [this, fail](Status s) {
        change_->setEnabled(true);
        change_->setText(tr("Change passphrase"));
        if (!s.ok())
          return fail(tr("The passphrase was not changed: %1")
                          .arg(QString::fromStdString(s.error().message)));
        accept();
      });
}

// ---- new group -----------------------------------------------------------------------------

NewGroupDialog::NewGroupDialog(Backend* backend, QWidget* parent)
    : QDialog(parent), backend_(backend) {
  setObjectName("newGroupDialog");
  setWindowTitle(tr("New group"));
  setMinimumSize(420, 460);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(24, 20, 24, 16);
  l->setSpacing(10);
  l->addWidget(heading(tr("Group name")));
  name_ = new QLineEdit;
  name_->setObjectName("groupName");
  name_->setPlaceholderText(tr("e.g. Weekend plans"));
  l->addWidget(name_);
  l->addWidget(heading(tr("Members")));
  members_ = new QListWidget;
  members_->setObjectName("groupMembers");
  members_->setStyleSheet("QListWidget::item { padding: 6px; }");
  members_->setIconSize(QSize(28, 28));
  l->addWidget(members_, 1);
  l->addWidget(
      muted(tr("Only people in your contacts can be added. The relay never learns who "
               "is in a group.")));
  error_ = new QLabel;
  error_->setProperty("error", true);
  error_->hide();
  l->addWidget(error_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel);
  auto* create = buttons->addButton(tr("Create group"), QDialogButtonBox::AcceptRole);
  create->setObjectName("createGroupButton");
  create->setProperty("primary", true);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  l->addWidget(buttons);

  backend_->local(
      this, [](Client& c) { return c.contacts(); },
      [this](Result<std::vector<Contact>> list) {
        if (!list.ok()) return;
        for (const auto& c : *list) {
          QString h = QString::fromStdString(app::at_handle(c.handle));
          auto* item =
              new QListWidgetItem(theme::avatar(h, QString::fromStdString(c.account), 28), h);
          item->setData(Qt::UserRole, QString::fromStdString(c.account));
          item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
          item->setCheckState(Qt::Unchecked);
          members_->addItem(item);
        }
      });

  connect(create, &QPushButton::clicked, this, [this, create] {
    std::string name = name_->text().trimmed().toStdString();
    std::vector<std::string> accounts;
    for (int i = 0; i < members_->count(); ++i)
      if (members_->item(i)->checkState() == Qt::Checked)
        accounts.push_back(members_->item(i)->data(Qt::UserRole).toString().toStdString());
    if (name.empty()) {
      error_->setText(tr("Give the group a name."));
      error_->show();
      return;
    }
    create->setEnabled(false);
    backend_->remote(
        this, [name, accounts](Client& c) { return c.create_group(name, accounts); },
        [this, create](Result<ConversationId> conv) {
          create->setEnabled(true);
          if (!conv.ok()) {
            error_->setText(QString::fromStdString(conv.error().message));
            error_->show();
            return;
          }
          emit created(*conv);
          accept();
        });
  });
}

// ---- conversation details ------------------------------------------------------------------

ConversationInfoDialog::ConversationInfoDialog(Backend* backend, const Conversation& conversation,
                                               QWidget* parent)
    : QDialog(parent), backend_(backend), conversation_(conversation) {
  setObjectName("conversationInfoDialog");
  bool group = conversation.kind == ConversationKind::kGroup;
  QString title = QString::fromStdString(conversation.title);
  setWindowTitle(group ? tr("Group details") : tr("Chat details"));
  setMinimumSize(440, group ? 560 : 300);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(24, 20, 24, 16);
  l->setSpacing(10);
  auto* top = new QHBoxLayout;
  auto* av = new QLabel;
  av->setPixmap(
      theme::avatar(title, group ? title : QString::fromStdString(conversation.peer), 56, group));
  top->addWidget(av);
  auto* t = new QLabel(title);
  t->setProperty("title", true);
  top->addWidget(t, 1);
  l->addLayout(top);

  if (group) {
    admin_tools_ = new QWidget;
    auto* rename_row = new QHBoxLayout(admin_tools_);
    rename_row->setContentsMargins(0, 0, 0, 0);
    name_ = new QLineEdit(title);
    name_->setObjectName("groupNameEdit");
    rename_row->addWidget(name_, 1);
    auto* rename = new QPushButton(tr("Rename"));
    rename_row->addWidget(rename);
    l->addWidget(admin_tools_);
    connect(rename, &QPushButton::clicked, this, [this] {
      std::string n = name_->text().trimmed().toStdString();
      ConversationId id = conversation_.id;
      act([id, n](Client& c) { return c.rename_group(id, n); });
    });

    l->addWidget(heading(tr("Members")));
    members_ = new QListWidget;
    members_->setObjectName("memberList");
    members_->setIconSize(QSize(28, 28));
    members_->setStyleSheet("QListWidget::item { padding: 6px; }");
    l->addWidget(members_, 1);
    auto* member_row = new QHBoxLayout;
    remove_ = new QPushButton(tr("Remove"));
    remove_->setProperty("danger", true);
    admin_ = new QPushButton(tr("Make admin"));
    member_row->addWidget(admin_);
    member_row->addWidget(remove_);
    member_row->addStretch();
    l->addLayout(member_row);
    auto* add_row = new QHBoxLayout;
    add_combo_ = new QComboBox;
    add_combo_->setObjectName("addMemberCombo");
    add_combo_->setPlaceholderText(tr("Everyone in your contacts is here"));
    add_row->addWidget(add_combo_, 1);
    auto* add = new QPushButton(tr("Add member"));
    add->setObjectName("addMemberButton");
    add_row->addWidget(add);
    l->addLayout(add_row);

    connect(add, &QPushButton::clicked, this, [this] {
      QString acc = add_combo_->currentData().toString();
      if (acc.isEmpty()) return;
      ConversationId id = conversation_.id;
      act([id, a = acc.toStdString()](Client& c) { return c.add_group_members(id, {a}); });
    });
    connect(remove_, &QPushButton::clicked, this, [this] {
      auto* item = members_->currentItem();
      if (!item) return;
      ConversationId id = conversation_.id;
      act([id, a = item->data(Qt::UserRole).toString().toStdString()](Client& c) {
        return c.remove_group_members(id, {a});
      });
    });
    connect(admin_, &QPushButton::clicked, this, [this] {
      auto* item = members_->currentItem();
      if (!item) return;
      bool make = !item->data(Qt::UserRole + 1).toBool();
      ConversationId id = conversation_.id;
      act([id, a = item->data(Qt::UserRole).toString().toStdString(), make](Client& c) {
        return c.set_group_admin(id, a, make);
      });
    });
    connect(members_, &QListWidget::currentItemChanged, this, [this](QListWidgetItem* item) {
      bool me = item && item->data(Qt::UserRole).toString() == backend_->account();
      bool can = group_ && group_->is_admin && item && !me;
      remove_->setEnabled(can);
      admin_->setEnabled(can);
      if (item)
        admin_->setText(item->data(Qt::UserRole + 1).toBool() ? tr("Remove admin")
                                                              : tr("Make admin"));
    });
  } else {
    auto* safety = new QPushButton(theme::icon(theme::Icon::kShield, theme::kAccent),
                                   tr("View safety number"));
    l->addWidget(safety, 0, Qt::AlignLeft);
    connect(safety, &QPushButton::clicked, this, [this] {
      emit show_safety_number(QString::fromStdString(conversation_.peer),
                              QString::fromStdString(conversation_.title));
    });
  }

  l->addWidget(heading(tr("Disappearing messages")));
  timer_ = new QComboBox;
  timer_->setObjectName("timerCombo");
  for (const auto& [secs, name] : kTimers) timer_->addItem(tr(name), secs);
  int found = timer_->findData(conversation.expire_timer_s);
  if (found < 0) {
    timer_->addItem(QString::fromStdString(app::format_duration(conversation.expire_timer_s)),
                    conversation.expire_timer_s);
    found = timer_->count() - 1;
  }
  timer_->setCurrentIndex(found);
  l->addWidget(timer_);
  l->addWidget(
      muted(tr("New messages disappear this long after they were read, on every "
               "device of everyone here.")));
  connect(timer_, &QComboBox::activated, this, [this](int index) {
    uint32_t secs = timer_->itemData(index).toUInt();
    ConversationId id = conversation_.id;
    act([id, secs](Client& c) { return c.set_disappearing_timer(id, secs); });
  });

  error_ = new QLabel;
  error_->setProperty("error", true);
  error_->setWordWrap(true);
  error_->hide();
  l->addWidget(error_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  if (group) {
    leave_ = buttons->addButton(tr("Leave group"), QDialogButtonBox::DestructiveRole);
    leave_->setProperty("danger", true);
    connect(leave_, &QPushButton::clicked, this, [this] {
      ConversationId id = conversation_.id;
      act([id](Client& c) { return c.leave_group(id); });
    });
  }
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  l->addWidget(buttons);
  connect(backend_, &Backend::conversation_changed, this, [this](ConversationId c) {
    if (c == conversation_.id) reload();
  });
  reload();
}

void ConversationInfoDialog::act(std::function<Status(Client&)> call) {
  error_->hide();
  backend_->remote(this, std::move(call), [this](Status s) {
    if (!s.ok()) {
      error_->setText(s.code() == ErrorCode::kForbidden
                          ? tr("Only the group's admins can do that.")
                          : QString::fromStdString(s.error().message));
      error_->show();
    }
    reload();
  });
}

void ConversationInfoDialog::reload() {
  if (conversation_.kind != ConversationKind::kGroup) return;
  ConversationId id = conversation_.id;
  backend_->local(
      this, [id](Client& c) { return std::make_pair(c.group(id), c.contacts()); },
      [this](std::pair<Result<GroupInfo>, Result<std::vector<Contact>>> r) {
        if (!r.first.ok()) return;
        group_ = *r.first;
        QString current = members_->currentItem()
                              ? members_->currentItem()->data(Qt::UserRole).toString()
                              : QString();
        members_->clear();
        QSet<QString> in_group;
        for (const auto& m : group_->members) {
          QString acc = QString::fromStdString(m.account);
          in_group.insert(acc);
          bool me = acc == backend_->account();
          QString h = QString::fromStdString(app::at_handle(m.handle));
          QString text = me ? tr("%1 (you)").arg(h) : h;
          if (m.admin) text += "   · " + tr("admin");
          auto* item = new QListWidgetItem(theme::avatar(h, acc, 28), text);
          item->setData(Qt::UserRole, acc);
          item->setData(Qt::UserRole + 1, m.admin);
          members_->addItem(item);
          if (acc == current) members_->setCurrentItem(item);
        }
        add_combo_->clear();
        if (r.second.ok())
          for (const auto& c : *r.second)
            if (!in_group.contains(QString::fromStdString(c.account)))
              add_combo_->addItem(QString::fromStdString(app::at_handle(c.handle)),
                                  QString::fromStdString(c.account));
        bool admin = group_->is_admin && group_->is_member;
        admin_tools_->setEnabled(admin);
        add_combo_->setEnabled(admin && add_combo_->count() > 0);
        remove_->setEnabled(false);
        admin_->setEnabled(false);
        if (leave_) leave_->setEnabled(group_->is_member);
        timer_->setEnabled(group_->is_member);
        if (!group_->is_member) {
          error_->setText(tr("You are no longer a member of this group."));
          error_->show();
        }
      });
}

}  // namespace sotto::desktop
