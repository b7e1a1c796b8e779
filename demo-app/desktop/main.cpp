// sotto-desktop: the Qt 6 desktop app.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QStandardPaths>

#include "AppSupport.h"
#include "AppWindow.h"
#include "Theme.h"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("sotto");
  QApplication::setApplicationDisplayName("sotto");
  sotto::desktop::theme::apply(app);

  QCommandLineParser parser;
  parser.setApplicationDescription("sotto: end-to-end encrypted messaging on a sotto relay.");
  parser.addHelpOption();
  QCommandLineOption data(
      {"d", "data-dir"},
      "Where profiles and settings live (default: ~/.local/share/sotto/desktop).", "DIR",
      QString::fromStdString((sotto::app::default_data_dir() / "desktop").string()));
  QCommandLineOption relay({"r", "relay"},
                           "The relay for new profiles (default: $SOTTO_RELAY or "
                           "ws://127.0.0.1:8080/v1/ws).",
                           "URL", QString::fromStdString(sotto::app::default_relay_url()));
  parser.addOption(data);
  parser.addOption(relay);
  parser.process(app);

  sotto::desktop::AppWindow window(QDir(parser.value(data)), parser.value(relay));
  window.show();
  return app.exec();
}
