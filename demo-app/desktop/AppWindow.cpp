#include "AppWindow.h"

#include <QSettings>
#include <QStackedWidget>
#include <QtConcurrent/QtConcurrent>
#include <algorithm>

#include "Backend.h"
#include "ChatWindow.h"
#include "WelcomePage.h"

namespace sotto::desktop {

AppWindow::AppWindow(const QDir& data_dir, const QString& relay_url, QWidget* parent)
    : QMainWindow(parent), data_dir_(data_dir), relay_url_(relay_url), backend_(new Backend(this)) {
  data_dir_.mkpath(".");
  setWindowTitle("sotto");
  resize(1120, 720);
  stack_ = new QStackedWidget;
  setCentralWidget(stack_);
  show_welcome({});
}

void AppWindow::show_welcome(const QString& notice) {
  if (welcome_) {
    stack_->removeWidget(welcome_);
    welcome_->deleteLater();
  }
  welcome_ = new WelcomePage(backend_, data_dir_, relay_url_);
  welcome_->show_notice(notice);
  stack_->addWidget(welcome_);
  stack_->setCurrentWidget(welcome_);
  // Never shorter than the first-run card (its height follows the font and the wrapping).
  setMinimumSize(860, std::max(560, welcome_->heightForWidth(860)));
  setWindowTitle("sotto");
  connect(welcome_, &WelcomePage::finished, this, &AppWindow::show_chat);
}

void AppWindow::close_profile(const QString& notice) {
  QString dir = welcome_->profile_dir();
  // The chat and its dialogs go first: their pending calls are then dropped. Deleting the
  // Backend waits for the calls under way and closes the Client, which frees the profile.
  stack_->setCurrentWidget(welcome_);
  welcome_->setEnabled(false);
  stack_->removeWidget(chat_);
  delete chat_;
  chat_ = nullptr;
  if (settings_) {
    settings_->remove("");  // this profile's group: its relay and privacy settings
    settings_.reset();
  }
  delete backend_;
  backend_ = new Backend(this);
  // Erasing can take a moment with many attachments: off the GUI thread.
  QtConcurrent::run([dir] { return Profile::erase(dir.toStdString()); })
      .then(this, [this, notice](Status erased) {
        if (!erased.ok())
          return show_welcome(notice + "\n" +
                              tr("The profile's files could not all be erased: %1")
                                  .arg(QString::fromStdString(erased.error().message)));
        show_welcome(notice);
      });
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
  // Queued: the chat is deleted, which it cannot be from inside its own signal.
  connect(chat_, &ChatWindow::account_closed, this, &AppWindow::close_profile,
          Qt::QueuedConnection);
  stack_->addWidget(chat_);
  stack_->setCurrentWidget(chat_);
  setWindowTitle("sotto — " + backend_->handle());
  chat_->start();
}

}  // namespace sotto::desktop
