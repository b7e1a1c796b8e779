#include "WelcomePage.h"

#include <QComboBox>
#include <QFrame>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSysInfo>
#include <QVBoxLayout>
#include <atomic>
#include <thread>

#include "Backend.h"
#include "Theme.h"

namespace sotto::desktop {
namespace {

QLabel* label(const QString& text, const char* property = nullptr) {
  auto* l = new QLabel(text);
  l->setWordWrap(true);
  if (property) l->setProperty(property, true);
  return l;
}

QPushButton* primary(const QString& text) {
  auto* b = new QPushButton(text);
  b->setProperty("primary", true);
  b->setDefault(true);
  b->setCursor(Qt::PointingHandCursor);
  return b;
}

}  // namespace

WelcomePage::WelcomePage(Backend* backend, QDir data_dir, QString relay_url, QWidget* parent)
    : QWidget(parent), backend_(backend), data_dir_(data_dir), relay_url_(std::move(relay_url)) {
  setObjectName("welcomePage");
  setAutoFillBackground(true);
  QPalette pal = palette();
  pal.setColor(QPalette::Window, theme::kChatBackground);
  setPalette(pal);

  auto* outer = new QVBoxLayout(this);
  outer->addStretch(1);
  // The card sits between stretches rather than being aligned: a vertical layout asks an
  // aligned item its height for the whole page's width, so the card's word-wrapped text got
  // the height of fewer lines than it has at the card's width, and the button at the bottom
  // was cut off. A row lays the card out at its own width and asks its height for that.
  auto* card = new QFrame;
  card->setProperty("card", true);
  auto* row = new QHBoxLayout;
  row->addStretch(1);
  row->addWidget(card);
  row->addStretch(1);
  outer->addLayout(row);
  outer->addStretch(2);

  auto* cl = new QVBoxLayout(card);
  cl->setContentsMargins(36, 32, 36, 32);
  // About fifty characters of the app's font wide.
  card->setFixedWidth(fontMetrics().averageCharWidth() * 52 + cl->contentsMargins().left() +
                      cl->contentsMargins().right());
  cl->setSpacing(14);
  auto* logo = new QLabel;
  logo->setPixmap(theme::logo(60));
  cl->addWidget(logo, 0, Qt::AlignHCenter);
  auto* title = label(tr("Welcome to sotto"), "title");
  title->setAlignment(Qt::AlignHCenter);
  cl->addWidget(title);
  auto* sub = label(tr("Private messages, end-to-end encrypted. Only the people you talk to can "
                       "read them; the relay only ever sees ciphertext."),
                    "muted");
  sub->setAlignment(Qt::AlignHCenter);
  cl->addWidget(sub);
  cl->addSpacing(6);
  notice_ = label("");
  notice_->setObjectName("welcomeNotice");
  notice_->setStyleSheet("background: #fdf6e3; color: #926b12; border-radius: 8px; padding: 8px;");
  notice_->hide();
  cl->addWidget(notice_);


  // Step 1: the profile.
  auto* p1 = new QWidget;
  auto* f1 = new QVBoxLayout(p1);
  f1->setContentsMargins(0, 0, 0, 0);
  f1->setSpacing(10);
  profile_combo_ = new QComboBox;
  profile_combo_->setObjectName("profileCombo");
  QStringList existing;
  for (const auto& e :
       QDir(data_dir_.filePath("profiles")).entryList(QDir::Dirs | QDir::NoDotAndDotDot))
    if (!QDir(data_dir_.filePath("profiles/" + e)).isEmpty()) existing << e;
  for (const auto& e : existing) profile_combo_->addItem(e, e);
  profile_combo_->addItem(tr("New profile…"), QString());
  f1->addWidget(label(tr("Profile")));
  f1->addWidget(profile_combo_);
  profile_name_edit_ = new QLineEdit(existing.isEmpty() ? "default" : "");
  profile_name_edit_->setObjectName("profileName");
  profile_name_edit_->setPlaceholderText(tr("Name of the new profile"));
  f1->addWidget(profile_name_edit_);
  passphrase_ = new QLineEdit;
  passphrase_->setObjectName("passphrase");
  passphrase_->setEchoMode(QLineEdit::Password);
  passphrase_->setPlaceholderText(tr("Passphrase"));
  f1->addWidget(passphrase_);
  confirm_ = new QLineEdit;
  confirm_->setObjectName("passphraseConfirm");
  confirm_->setEchoMode(QLineEdit::Password);
  confirm_->setPlaceholderText(tr("Passphrase again"));
  f1->addWidget(confirm_);
  relay_edit_ = new QLineEdit(relay_url_);
  relay_edit_->setObjectName("relayUrl");
  relay_edit_->setPlaceholderText("wss://relay.example.org/v1/ws");
  relay_edit_->setToolTip(tr("The relay this profile talks to"));
  f1->addWidget(label(tr("Relay"), "muted"));
  f1->addWidget(relay_edit_);
  profile_error_ = label("", "error");
  profile_error_->hide();
  f1->addWidget(profile_error_);
  open_button_ = primary(tr("Continue"));
  open_button_->setObjectName("openButton");
  f1->addWidget(open_button_);
  cl->addWidget(p1);
  steps_.push_back(p1);

  // Step 2: the account.
  auto* p2 = new QWidget;
  auto* f2 = new QVBoxLayout(p2);
  f2->setContentsMargins(0, 0, 0, 0);
  f2->setSpacing(10);
  f2->addWidget(label(tr("Choose the handle people find you by:")));
  handle_ = new QLineEdit;
  handle_->setObjectName("handle");
  handle_->setPlaceholderText("@yourname");
  f2->addWidget(handle_);
  f2->addWidget(label(tr("3 to 32 letters, digits, '_' or '.', starting with a letter."), "muted"));
  account_error_ = label("", "error");
  account_error_->hide();
  f2->addWidget(account_error_);
  register_button_ = primary(tr("Create account"));
  register_button_->setObjectName("registerButton");
  f2->addWidget(register_button_);
  link_button_ = new QPushButton(tr("I already have an account: link this device"));
  link_button_->setObjectName("linkButton");
  link_button_->setProperty("flat", true);
  link_button_->setCursor(Qt::PointingHandCursor);
  f2->addWidget(link_button_);
  cl->addWidget(p2);
  steps_.push_back(p2);

  // Step 3: linking.
  auto* p3 = new QWidget;
  auto* f3 = new QVBoxLayout(p3);
  f3->setContentsMargins(0, 0, 0, 0);
  f3->setSpacing(10);
  f3->addWidget(
      label(tr("On a device of your account, open Settings → Devices → Link a device "
               "and enter this text (in sotto-chat: /approve followed by it):")));
  invite_text_ = new QLabel(tr("Asking the relay…"));
  invite_text_->setObjectName("inviteText");
  invite_text_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  invite_text_->setWordWrap(true);
  invite_text_->setAlignment(Qt::AlignCenter);
  invite_text_->setStyleSheet(
      "font-family: 'DejaVu Sans Mono'; font-size: 12pt; background: #f1f3f6; "
      "border-radius: 8px; padding: 12px;");
  f3->addWidget(invite_text_);
  link_status_ = label(tr("Waiting for the approval…"), "muted");
  f3->addWidget(link_status_);
  auto* cancel = new QPushButton(tr("Cancel"));
  f3->addWidget(cancel);
  cl->addWidget(p3);
  steps_.push_back(p3);

  connect(profile_combo_, &QComboBox::currentIndexChanged, this,
          &WelcomePage::profile_choice_changed);
  connect(open_button_, &QPushButton::clicked, this, &WelcomePage::open_profile);
  connect(passphrase_, &QLineEdit::returnPressed, this, [this] {
    if (confirm_->isVisible())
      confirm_->setFocus();
    else
      open_profile();
  });
  connect(confirm_, &QLineEdit::returnPressed, this, &WelcomePage::open_profile);
  connect(register_button_, &QPushButton::clicked, this, &WelcomePage::register_account);
  connect(handle_, &QLineEdit::returnPressed, this, &WelcomePage::register_account);
  connect(link_button_, &QPushButton::clicked, this, &WelcomePage::start_link);
  connect(cancel, &QPushButton::clicked, this, &WelcomePage::cancel_link);
  profile_choice_changed();
  show_step(0);
}

void WelcomePage::show_step(int index) {
  // Only the step on screen takes room in the card (a stacked widget would keep the tallest).
  for (size_t i = 0; i < steps_.size(); ++i) steps_[i]->setVisible(static_cast<int>(i) == index);
}

void WelcomePage::show_notice(const QString& text) { show_error(notice_, text); }

void WelcomePage::profile_choice_changed() {
  bool fresh = profile_combo_->currentData().toString().isEmpty();
  profile_name_edit_->setVisible(fresh);
  confirm_->setVisible(fresh);
  open_button_->setText(fresh ? tr("Create profile") : tr("Open"));
  if (!fresh) {
    QSettings s(data_dir_.filePath("desktop.ini"), QSettings::IniFormat);
    QString relay =
        s.value("profiles/" + profile_combo_->currentData().toString() + "/relay").toString();
    if (!relay.isEmpty()) relay_edit_->setText(relay);
  }
}

void WelcomePage::show_error(QLabel* l, const QString& text) {
  l->setText(text);
  l->setVisible(!text.isEmpty());
}

void WelcomePage::set_busy(bool busy) {
  open_button_->setEnabled(!busy);
  register_button_->setEnabled(!busy);
  link_button_->setEnabled(!busy);
}

void WelcomePage::open_profile() {
  bool fresh = profile_combo_->currentData().toString().isEmpty();
  QString name =
      fresh ? profile_name_edit_->text().trimmed() : profile_combo_->currentData().toString();
  if (name.isEmpty() || name.contains('/') || name.startsWith('.'))
    return show_error(profile_error_, tr("Give the profile a name (no '/')."));
  if (fresh && QDir(data_dir_.filePath("profiles/" + name)).exists() &&
      !QDir(data_dir_.filePath("profiles/" + name)).isEmpty())
    return show_error(profile_error_, tr("There is already a profile called %1.").arg(name));
  if (passphrase_->text().isEmpty()) return show_error(profile_error_, tr("Enter the passphrase."));
  if (fresh && passphrase_->text() != confirm_->text())
    return show_error(profile_error_, tr("The two passphrases differ."));
  if (relay_edit_->text().trimmed().isEmpty())
    return show_error(profile_error_, tr("Enter the relay's address."));
  show_error(profile_error_, "");
  profile_name_ = name;
  profile_dir_ = data_dir_.filePath("profiles/" + name);
  QDir().mkpath(profile_dir_);
  relay_url_ = relay_edit_->text().trimmed();
  QSettings settings(data_dir_.filePath("desktop.ini"), QSettings::IniFormat);
  settings.setValue("profiles/" + name + "/relay", relay_url_);
  set_busy(true);
  open_button_->setText(tr("Opening…"));
  QString pass = passphrase_->text();
  passphrase_->clear();
  confirm_->clear();
  backend_->open(profile_dir_, pass, relay_url_,
                 tr("sotto desktop on %1").arg(QSysInfo::machineHostName()), [this](Status s) {
                   set_busy(false);
                   profile_choice_changed();
                   if (!s.ok()) {
                     if (s.code() == ErrorCode::kWrongKey)
                       return show_error(profile_error_, tr("Wrong passphrase."));
                     return show_error(profile_error_, QString::fromStdString(s.error().message));
                   }
                   if (backend_->account().isEmpty()) {
                     show_step(1);
                     handle_->setFocus();
                   }
                 });
  connect(backend_, &Backend::account_ready, this, &WelcomePage::finished, Qt::UniqueConnection);
}

void WelcomePage::register_account() {
  QString handle = handle_->text().trimmed();
  if (handle.isEmpty()) return show_error(account_error_, tr("Choose a handle."));
  show_error(account_error_, "");
  set_busy(true);
  register_button_->setText(tr("Creating…"));
  backend_->remote(
      this, [h = handle.toStdString()](Client& c) { return c.register_account(h); },
      [this, handle](Result<AccountInfo> r) {
        set_busy(false);
        register_button_->setText(tr("Create account"));
        if (!r.ok()) {
          if (r.code() == ErrorCode::kConflict)
            return show_error(account_error_, tr("%1 is taken. Try another.").arg(handle));
          return show_error(account_error_, QString::fromStdString(r.error().message));
        }
        backend_->set_account(*r);
      });
}

void WelcomePage::start_link() {
  show_step(2);
  linking_ = true;
  invite_text_->setText(tr("Asking the relay…"));
  backend_->remote(
      this, [](Client& c) { return c.start_link(); },
      [this](Result<LinkInvite> invite) {
        if (!invite.ok()) {
          link_status_->setText(QString::fromStdString(invite.error().message));
          return;
        }
        invite_text_->setText(QString::fromStdString(invite->text));
        // Wait in short steps so Cancel and closing the window are not held up.
        const std::atomic<bool>* stopping = backend_->stopping();
        link_cancel_ = std::make_shared<std::atomic<bool>>(false);
        backend_->remote(
            this,
            [stopping, cancel = link_cancel_](Client& c) -> Result<AccountInfo> {
              for (int i = 0; i < 600 && !*stopping && !*cancel; ++i) {
                auto r = c.finish_link(std::chrono::seconds(1));
                if (r.code() != ErrorCode::kTimeout) return r;
              }
              return make_error(ErrorCode::kTimeout, "no device approved the link in time");
            },
            [this](Result<AccountInfo> r) {
              if (!linking_) return;
              if (!r.ok()) {
                link_status_->setText(QString::fromStdString(r.error().message));
                return;
              }
              linking_ = false;
              backend_->set_account(*r);
            });
      });
}

void WelcomePage::cancel_link() {
  linking_ = false;
  if (link_cancel_) *link_cancel_ = true;
  show_step(1);
}

}  // namespace sotto::desktop
