// The desktop app's window: the first-run screens, then the chat. One AppWindow is one profile
// with its own Backend; tests open two side by side in one process.
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

  QDir data_dir_;
  Backend* backend_;
  std::unique_ptr<QSettings> settings_;
  QStackedWidget* stack_;
  WelcomePage* welcome_;
  ChatWindow* chat_ = nullptr;
};

}  // namespace sotto::desktop
