// The app's dialogs: safety number, a message's details (receipts), settings (account,
// privacy, devices), a new passphrase, a new group, and a conversation's details (group members, name,
// disappearing messages). All are non-blocking
// (open(), never exec()), and every call that reaches the relay runs through the Backend.
//
// Thread rule: GUI thread.
#pragma once

#include <QDialog>
#include <QHash>
#include <QImage>

#include "sotto/Client.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSettings;
class QTreeWidget;

namespace sotto::desktop {

class Backend;

// A QR code of `data` (binary mode), one pixel per module with the four-module quiet zone
// around it, black on white; a null image when the app was built without libqrencode.
QImage qr_code(const Bytes& data);

// The 60 digits in twelve groups of five, and a QR code of SafetyNumber::scannable for the
// other side's app to scan.
class SafetyNumberDialog : public QDialog {
  Q_OBJECT

 public:
  // `account`'s number; its "verified" box records that the user compared it
  // (Client::set_verified), which holds until the contact's key changes.
  SafetyNumberDialog(Backend* backend, const QString& account, const QString& handle,
                     const SafetyNumber& number, QWidget* parent);
};

// An outgoing message's details: its text, when it was sent, its status, and every recipient
// by name with their receipt (delivered or read, and when). Follows receipts as they arrive.
class MessageInfoDialog : public QDialog {
  Q_OBJECT

 public:
  MessageInfoDialog(Backend* backend, ConversationId conversation, const QString& message_id,
                    QWidget* parent);
  void reload();

 private:
  Backend* backend_;
  ConversationId conversation_;
  QString message_id_;
  QLabel* text_;
  QLabel* sent_;
  QLabel* status_;
  QTreeWidget* receipts_;
};

class SettingsDialog : public QDialog {
  Q_OBJECT

 public:
  SettingsDialog(Backend* backend, QSettings* settings, QWidget* parent);
  void refresh_devices();

 private:
  Backend* backend_;
  QSettings* settings_;
  QListWidget* devices_;
  QLineEdit* approve_text_;
  QLabel* devices_status_;
};

// A new passphrase for the open profile, typed twice. The profile is re-encrypted under it off
// the GUI thread (Argon2id and a rewrite of the database); accepted once that is done.
class ChangePassphraseDialog : public QDialog {
  Q_OBJECT

 public:
  ChangePassphraseDialog(Backend* backend, QWidget* parent);

 private:
  void change();

  Backend* backend_;
  QLineEdit* passphrase_;
  QLineEdit* confirm_;
  QLabel* error_;
  QPushButton* change_;
};

class NewGroupDialog : public QDialog {
  Q_OBJECT

 public:
  NewGroupDialog(Backend* backend, QWidget* parent);

 signals:
  void created(sotto::ConversationId conversation);

 private:
  Backend* backend_;
  QLineEdit* name_;
  QListWidget* members_;
  QLabel* error_;
};

class ConversationInfoDialog : public QDialog {
  Q_OBJECT

 public:
  ConversationInfoDialog(Backend* backend, const Conversation& conversation, QWidget* parent);
  void reload();

 signals:
  void show_safety_number(const QString& account, const QString& handle);

 private:
  void act(std::function<Status(Client&)> call);

  Backend* backend_;
  Conversation conversation_;
  std::optional<GroupInfo> group_;
  QLineEdit* name_ = nullptr;
  QListWidget* members_ = nullptr;
  QComboBox* add_combo_ = nullptr;
  QComboBox* timer_;
  QLabel* error_;
  QWidget* admin_tools_ = nullptr;
  QPushButton* remove_ = nullptr;
  QPushButton* admin_ = nullptr;
  QPushButton* leave_ = nullptr;
};

}  // namespace sotto::desktop
