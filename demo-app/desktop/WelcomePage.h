// The first screens: create or open a profile (passphrase), then create an account (handle)
// or link this device to an account the user already has.
//
// Thread rule: GUI thread; the slow parts go through the Backend.
#pragma once

#include <QDir>
#include <QWidget>
#include <atomic>
#include <memory>
#include <vector>

class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;

namespace sotto::desktop {

class Backend;

class WelcomePage : public QWidget {
  Q_OBJECT

 public:
  WelcomePage(Backend* backend, QDir data_dir, QString relay_url, QWidget* parent = nullptr);
  // The profile directory chosen (valid once the profile is open).
  QString profile_dir() const { return profile_dir_; }
  QString profile_name() const { return profile_name_; }
  // A line above the form (what happened to the profile closed before); none when empty.
  void show_notice(const QString& text);

 signals:
  void finished();  // the profile is open and has an account

 private:
  void open_profile();
  void register_account();
  void start_link();
  void cancel_link();
  void show_error(QLabel* label, const QString& text);
  void profile_choice_changed();
  void set_busy(bool busy);
  void show_step(int index);

  Backend* backend_;
  QDir data_dir_;
  QString relay_url_;
  QString profile_dir_;
  QString profile_name_;
  bool linking_ = false;
  std::shared_ptr<std::atomic<bool>> link_cancel_;

  QLabel* notice_;
  std::vector<QWidget*> steps_;  // profile, account, linking
  QComboBox* profile_combo_;
  QLineEdit* profile_name_edit_;
  QLineEdit* passphrase_;
  QLineEdit* confirm_;
  QLineEdit* relay_edit_;
  QPushButton* open_button_;
  QLabel* profile_error_;
  QLineEdit* handle_;
  QPushButton* register_button_;
  QPushButton* link_button_;
  QLabel* account_error_;
  QLabel* invite_text_;
  QLabel* link_status_;
};

}  // namespace sotto::desktop
