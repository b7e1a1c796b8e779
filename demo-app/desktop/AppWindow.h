// The desktop app's window: the first-run screens, then the chat, and back to the first screens
// when the account or this device leaves. One AppWindow is one profile at a time, with its own
// Backend; tests open several side by side in one process.
//
// Thread rule: GUI thread.
#pragma once

#include <QDir>
#include <QMainWindow>
#include <memory>

class QSettings;
class QStackedWidget;

namespace sotto::desktop {

class Backend;
class ChatWindow;
class WelcomePage;

class AppWindow : public QMainWindow {
  Q_OBJECT

 public:
  // `data_dir` holds the profiles and the app's settings; `relay_url` is the default relay.
  AppWindow(const QDir& data_dir, const QString& relay_url, QWidget* parent = nullptr);
  ~AppWindow() override;

  Backend* backend() { return backend_; }
  WelcomePage* welcome() { return welcome_; }
  ChatWindow* chat() { return chat_; }
  bool on_chat() const;

 private:
  void show_chat();
  void show_welcome(const QString& notice);
  // After log out or account deletion: closes the Client, erases the profile, and goes back to
  // the first screen with `notice`.
  void close_profile(const QString& notice);

  QDir data_dir_;
  QString relay_url_;
  Backend* backend_;
  std::unique_ptr<QSettings> settings_;
  QStackedWidget* stack_;
  WelcomePage* welcome_ = nullptr;
  ChatWindow* chat_ = nullptr;
};

}  // namespace sotto::desktop
