#include "AppWindow.h"

#include <QSettings>
#include <QStackedWidget>
#include <algorithm>

#include "Backend.h"
#include "ChatWindow.h"
#include "WelcomePage.h"

namespace sotto::desktop {

AppWindow::AppWindow(const QDir& data_dir, const QString& relay_url, QWidget* parent)
    : QMainWindow(parent), data_dir_(data_dir), backend_(new Backend(this)) {
  data_dir_.mkpath(".");
  setWindowTitle("sotto");
  resize(1120, 720);
  stack_ = new QStackedWidget;
  setCentralWidget(stack_);
  welcome_ = new WelcomePage(backend_, data_dir_, relay_url);
  stack_->addWidget(welcome_);
  // Never shorter than the first-run card (its height follows the font and the wrapping).
  setMinimumSize(860, std::max(560, welcome_->heightForWidth(860)));
  connect(welcome_, &WelcomePage::finished, this, &AppWindow::show_chat);
}

AppWindow::~AppWindow() {
  // The chat's pending calls hold pointers into it: close the Backend (which waits for them)
  // before the widgets go.
  delete backend_;
}

bool AppWindow::on_chat() const { return chat_ && stack_->currentWidget() == chat_; }

void AppWindow::show_chat() {
  if (chat_) return;
  settings_ = std::make_unique<QSettings>(data_dir_.filePath("desktop.ini"), QSettings::IniFormat);
  settings_->beginGroup("profiles/" + welcome_->profile_name());
  chat_ = new ChatWindow(backend_, settings_.get());
  stack_->addWidget(chat_);
  stack_->setCurrentWidget(chat_);
  setWindowTitle("sotto — " + backend_->handle());
  chat_->start();
}

}  // namespace sotto::desktop
