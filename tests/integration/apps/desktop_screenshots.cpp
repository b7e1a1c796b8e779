// ./run screenshots: starts a relay, plays a short conversation between three real desktop
// windows (offscreen) and writes PNGs of the main screens into the directory given.
#include <QApplication>
#include <QDialog>
#include <QDir>
#include <QLinearGradient>
#include <QListWidget>
#include <QPainter>
#include <QTabWidget>
#include <QTemporaryDir>
#include <cstdio>

#include "DesktopDriver.h"
#include "Dialogs.h"
#include "RelayProcess.h"
#include "Theme.h"

using namespace sotto;
using namespace sotto::test;

namespace {

QDir out_dir;
int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "screenshots: %s failed\n", what);
    ++failures;
  }
}

void save(QWidget* w, const QString& name) {
  QTest::qWait(400);  // pending loads and layout
  QString path = out_dir.filePath(name);
  bool ok = w->grab().save(path);
  std::printf("%s %s\n", ok ? "wrote" : "could not write", qPrintable(path));
  if (!ok) ++failures;
}

template <class T>
T* dialog(AppWindow& w, const char* name) {
  T* d = nullptr;
  wait_for([&] { return (d = w.findChild<T*>(name)) != nullptr && d->isVisible(); }, 5000);
  return d;
}

QString make_photo(const QDir& dir) {
  QImage img(800, 520, QImage::Format_RGB32);
  QPainter p(&img);
  QLinearGradient sky(0, 0, 0, 520);
  sky.setColorAt(0, QColor(0x7d, 0xb9, 0xe8));
  sky.setColorAt(0.6, QColor(0xf6, 0xd3, 0x65));
  sky.setColorAt(1, QColor(0xfd, 0xa0, 0x85));
  p.fillRect(img.rect(), sky);
  p.setBrush(QColor(0x1e, 0x3a, 0x5f));
  p.setPen(Qt::NoPen);
  p.drawRect(0, 380, 800, 140);
  p.setBrush(QColor(0xff, 0xf4, 0xd6));
  p.drawEllipse(QPointF(560, 330), 60, 60);
  p.setBrush(QColor(0x33, 0x33, 0x33));
  p.drawRect(180, 220, 36, 170);
  p.setBrush(QColor(0xdc, 0x26, 0x26));
  p.drawRect(180, 250, 36, 24);
  p.end();
  QString path = dir.filePath("harbour.png");
  img.save(path);
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  desktop::theme::apply(app);
  if (argc < 2) {
    std::fprintf(stderr, "usage: desktop_screenshots OUT_DIR\n");
    return 2;
  }
  out_dir = QDir(argv[1]);
  out_dir.mkpath(".");

  RelayProcess relay;
  if (!relay.running()) return 1;
  QString url = QString::fromStdString(relay.ws_url());
  QTemporaryDir a_dir, b_dir, c_dir, fresh_dir;
  AppWindow fresh(QDir(fresh_dir.path()), url);
  fresh.show();
  save(&fresh, "01-welcome.png");
  fresh.hide();

  AppWindow alice(QDir(a_dir.path()), url), bob(QDir(b_dir.path()), url),
      carol(QDir(c_dir.path()), url);
  alice.show();
  bob.show();
  carol.show();
  QString why;
  for (auto [w, h] : {std::pair{&alice, "alice"}, {&bob, "bob"}, {&carol, "carol"}})
    if (!create_account(*w, h, &why)) {
      std::fprintf(stderr, "screenshots: %s: %s\n", h, qPrintable(why));
      return 1;
    }

  check(start_chat(carol, "@alice"), "carol's chat");
  check(send(carol, "Did the slides for Monday reach you?"), "carol's message");
  check(start_chat(bob, "@alice"), "bob's chat");
  check(start_chat(alice, "@carol"), "alice adds carol");
  check(start_chat(alice, "@bob"), "alice adds bob");
  check(send(bob, "Hey! Are we still on for the harbour walk on Saturday?"), "bob 1");
  wait_for([&] { return alice.chat()->message_model()->rowCount() >= 1; });
  check(send(alice, "Yes! 10 am at the lighthouse?"), "alice 1");
  check(send(bob, "Perfect. I will bring coffee for both of us."), "bob 2");
  wait_for([&] { return alice.chat()->message_model()->rowCount() >= 3; });
  alice.chat()->send_file(make_photo(QDir(a_dir.path())));
  wait_for([&] {
    auto* m = alice.chat()->message_model();
    return m->rowCount() >= 4 && !m->at(m->rowCount() - 1)->uploading;
  });
  check(send(alice, "This is where we met last time. The view at sunset was something else."),
        "alice 2");
  wait_for(
      [&] { return status_of(alice, "Yes! 10 am at the lighthouse?") == MessageStatus::kRead; });
  check(send(bob, "Great photo! See you there"), "bob 3");
  wait_for([&] { return alice.chat()->message_model()->rowCount() >= 6; });
  check(send(alice, "Bring a jacket, it gets windy by the water"), "alice 3");
  wait_for([&] {
    return status_of(alice, "Bring a jacket, it gets windy by the water") == MessageStatus::kRead;
  });

  // Groups.
  alice.chat()->show_new_group();
  if (auto* d = dialog<desktop::NewGroupDialog>(alice, "newGroupDialog")) {
    QTest::keyClicks(child<QLineEdit>(d, "groupName"), "Weekend plans");
    auto* members = child<QListWidget>(d, "groupMembers");
    wait_for([&] { return members->count() == 2; });
    for (int i = 0; i < members->count(); ++i) members->item(i)->setCheckState(Qt::Checked);
    save(d, "06-new-group.png");
    QTest::mouseClick(child<QPushButton>(d, "createGroupButton"), Qt::LeftButton);
    check(wait_for([&] { return child<QLabel>(&alice, "chatTitle")->text() == "Weekend plans"; }),
          "group created");
    check(send(alice, "Who is in for Saturday? Harbour walk, then lunch"), "group message");
    if (open_chat(bob, "Weekend plans")) {
      check(send(bob, "Count me in!"), "bob in group");
      if (open_chat(carol, "Weekend plans"))
        check(send(carol, "Me too, I know a good place for lunch"), "carol");
    } else {
      check(false, "the group reaching bob");
    }
    wait_for([&] { return alice.chat()->message_model()->rowCount() >= 4; }, 10000);
    save(&alice, "03-group.png");
    // Who has the group message, by handle.
    const QString asked = "Who is in for Saturday? Harbour walk, then lunch";
    wait_for([&] { return status_of(alice, asked) == MessageStatus::kRead; }, 10000);
    auto* model = alice.chat()->message_model();
    if (int row = row_with_text(model, asked); row >= 0)
      alice.chat()->show_message_info(QString::fromStdString(model->at(row)->message.id));
    if (auto* info = dialog<desktop::MessageInfoDialog>(alice, "messageInfoDialog")) {
      save(info, "10-message-info.png");
      info->close();
    } else {
      check(false, "the message info dialog");
    }
    alice.chat()->show_info();
    if (auto* info = dialog<desktop::ConversationInfoDialog>(alice, "conversationInfoDialog")) {
      save(info, "07-group-details.png");
      info->close();
    }
  }

  // Carol writes again while alice is elsewhere: an unread badge.
  check(open_chat(carol, "@alice"), "carol back to alice");
  check(send(carol, "Also: lunch on Sunday?"), "carol 2");
  // Back to bob: typing shows live.
  check(open_chat(alice, "@bob"), "alice opens bob");
  check(open_chat(bob, "@alice"), "bob opens alice");
  QTest::keyClicks(child<QLineEdit>(&bob, "composer"), "On my way");
  wait_for([&] { return child<QLabel>(&alice, "typingLabel")->text().contains("typing"); }, 10000);
  save(&alice, "02-chat.png");

  // Search.
  alice.chat()->set_search_visible(true);
  QTest::keyClicks(child<QLineEdit>(&alice, "searchField"), "harbour");
  QTest::keyClick(child<QLineEdit>(&alice, "searchField"), Qt::Key_Return);
  auto* results = child<QListWidget>(&alice, "searchResults");
  check(wait_for([&] { return results->count() >= 2; }, 10000), "search results");
  if (results->count() > 0) {
    QTest::mouseClick(results->viewport(), Qt::LeftButton, {},
                      results->visualItemRect(results->item(results->count() - 1)).center());
    wait_for([&] { return !alice.chat()->message_model()->highlight().isEmpty(); }, 5000);
  }
  save(&alice, "04-search.png");
  alice.chat()->set_search_visible(false);

  // Safety number and settings.
  child<QToolButton>(&alice, "safetyButton")->click();
  if (auto* d = dialog<desktop::SafetyNumberDialog>(alice, "safetyNumberDialog")) {
    save(d, "05-safety-number.png");
    d->close();
  } else {
    check(false, "the safety number dialog");
  }
  alice.chat()->show_settings();
  if (auto* d = dialog<desktop::SettingsDialog>(alice, "settingsDialog")) {
    auto* tabs = d->findChild<QTabWidget*>();
    tabs->setCurrentIndex(1);
    save(d, "08-settings-privacy.png");
    tabs->setCurrentIndex(2);
    auto* devices = d->findChild<QListWidget*>("deviceList");
    wait_for([&] { return devices->count() > 0; }, 10000);
    save(d, "09-settings-devices.png");
    d->close();
  }
  QTest::qWait(100);
  return failures == 0 ? 0 : 1;
}
