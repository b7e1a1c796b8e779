// sotto-desktop's real windows, two profiles in one process (offscreen), against a real relay
// process: first run, a chat both ways with delivered and read ticks, typing, search that jumps
// to the message, a group made in its dialog, and a file with its progress.
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QCryptographicHash>
#include <QFile>
#include <QImage>
#include <QListWidget>
#include <QMessageBox>
#include <QPointer>
#include <QTemporaryDir>
#include <QTest>
#include <QTreeWidget>
#include <memory>
#include <optional>

#include "Delegates.h"
#include "DesktopDriver.h"
#include "Dialogs.h"
#include "RelayProcess.h"
#include "WelcomePage.h"
#include "Theme.h"

namespace sotto::test {

class DesktopTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    relay_ = std::make_unique<RelayProcess>();
    QVERIFY2(relay_->running(), "the relay did not start");
    QString url = QString::fromStdString(relay_->ws_url());
    alice_ = std::make_unique<AppWindow>(QDir(alice_dir_.path()), url);
    bob_ = std::make_unique<AppWindow>(QDir(bob_dir_.path()), url);
    alice_->show();
    bob_->show();
    bob_->move(1200, 0);
  }

  void cleanupTestCase() {
    alice_.reset();
    bob_.reset();
    relay_.reset();
  }

  void first_screen_shows_the_whole_button() {
    // The card is as tall as its word-wrapped text needs at its own width, at any window size
    // the window allows: the button at its bottom is never cut off.
    auto* open = child<QPushButton>(alice_.get(), "openButton");
    for (QSize size : {QSize(1120, 720), alice_->minimumSize()}) {
      alice_->resize(size);
      QTRY_COMPARE(alice_->size(), size);
      QTest::qWait(20);  // the layouts run
      QCOMPARE(open->text(), QString("Create profile"));
      QVERIFY(open->sizeHint().width() > QFontMetrics(open->font()).horizontalAdvance(open->text()));
      QVERIFY(open->width() >= open->sizeHint().width());
      QVERIFY(open->height() >= open->sizeHint().height());
      QCOMPARE(open->visibleRegion(), QRegion(open->rect()));
    }
    alice_->resize(1120, 720);
  }

  void first_run_creates_profile_and_account() {
    QString why;
    QVERIFY2(create_account(*alice_, "alice", &why), qPrintable(why));
    QVERIFY2(create_account(*bob_, "bob", &why), qPrintable(why));
    QCOMPARE(child<QLabel>(alice_.get(), "myHandle")->text(), QString("@alice"));
    QVERIFY(QDir(alice_dir_.filePath("profiles/default")).exists());
  }

  void message_goes_both_ways_and_is_delivered_then_read() {
    QVERIFY(start_chat(*alice_, "@bob"));
    QVERIFY(send(*alice_, "Hello Bob, this is Alice"));
    QTRY_VERIFY_WITH_TIMEOUT(
        status_of(*alice_, "Hello Bob, this is Alice") == MessageStatus::kDelivered, 20000);

    // Bob has not opened it: it waits in his sidebar as unread, with its text.
    auto* bob_list = bob_->chat()->conversation_model();
    QTRY_COMPARE_WITH_TIMEOUT(bob_list->rowCount(), 1, 20000);
    QCOMPARE(
        bob_list->data(bob_list->index(0), desktop::ConversationListModel::kUnreadRole).toInt(), 1);
    QCOMPARE(status_of(*alice_, "Hello Bob, this is Alice"), MessageStatus::kDelivered);

    // He opens it: it is read, and Alice's ticks turn to read.
    QString title = bob_list->data(bob_list->index(0), Qt::DisplayRole).toString();
    QVERIFY(open_chat(*bob_, title));
    QTRY_VERIFY(row_with_text(bob_->chat()->message_model(), "Hello Bob, this is Alice") >= 0);
    QTRY_COMPARE_WITH_TIMEOUT(status_of(*alice_, "Hello Bob, this is Alice"), MessageStatus::kRead,
                              20000);
    QTRY_COMPARE(
        bob_list->data(bob_list->index(0), desktop::ConversationListModel::kUnreadRole).toInt(), 0);

    // Message info: a dialog with the sent time, the status and Bob's receipt, by his handle.
    check_message_info(*alice_, "Hello Bob, this is Alice", {"@bob"});

    // Alice types: Bob sees it under the chat.
    QTest::keyClicks(child<QLineEdit>(alice_.get(), "composer"), "and one more");
    QTRY_VERIFY_WITH_TIMEOUT(child<QLabel>(bob_.get(), "typingLabel")->text().contains("is typing"),
                             20000);
    child<QLineEdit>(alice_.get(), "composer")->clear();

    // Bob answers; Alice has the chat open, so it is read at once.
    QVERIFY(send(*bob_, "Hi Alice!"));
    QTRY_VERIFY_WITH_TIMEOUT(row_with_text(alice_->chat()->message_model(), "Hi Alice!") >= 0,
                             20000);
    QTRY_COMPARE_WITH_TIMEOUT(status_of(*bob_, "Hi Alice!"), MessageStatus::kRead, 20000);
  }

  void long_text_wraps_between_words() {
    // Lines break after a space; only a word longer than a line is broken inside.
    QString words =
        "Wrapping should happen between words and never in the middle of one, however the "
        "sentence falls across the lines of the bubble";
    QString long_word = QString("0123456789").repeated(15);
    QString text = words + " " + long_word + " and the end";
    QVERIFY(send(*alice_, text));
    auto* view = child<QListView>(alice_.get(), "messageList");
    auto* delegate = qobject_cast<desktop::MessageDelegate*>(view->itemDelegate());
    QVERIFY(delegate);
    auto* model = alice_->chat()->message_model();
    QStringList lines = delegate->text_lines(model->index(row_with_text(model, text)));
    QVERIFY2(lines.size() >= 4, qPrintable(lines.join('|')));
    QCOMPARE(lines.join(""), text);
    int long_from = static_cast<int>(text.indexOf(long_word));
    int long_to = long_from + static_cast<int>(long_word.size());
    int end = 0;
    QFontMetrics fm(view->font());
    for (int i = 0; i < lines.size(); ++i) {
      end += static_cast<int>(lines[i].size());
      bool inside_long_word = end > long_from && end < long_to;
      if (i + 1 < lines.size())
        QVERIFY2(lines[i].endsWith(' ') || inside_long_word, qPrintable(lines.join('|')));
      // No line runs out of the bubble: the long word is broken.
      QVERIFY2(fm.horizontalAdvance(lines[i].trimmed()) <= view->viewport()->width() * 0.68,
               qPrintable(lines[i]));
    }
  }

  void safety_number_shows_its_digits_in_groups_and_a_qr_code() {
    auto* conversations = alice_->chat()->conversation_model();
    const Conversation* bob = conversations->at(conversations->row_of(alice_->chat()->current()));
    QVERIFY(bob && bob->kind == ConversationKind::kDirect);
    const std::string peer = bob->peer;  // the model may reload under `bob` later
    std::optional<Result<SafetyNumber>> number;
    alice_->backend()->local(
        alice_.get(), [peer](Client& c) { return c.safety_number(peer); },
        [&](Result<SafetyNumber> n) { number = std::move(n); });
    QTRY_VERIFY(number.has_value());
    QVERIFY(number->ok());
    QTest::mouseClick(child<QToolButton>(alice_.get(), "safetyButton"), Qt::LeftButton);
    desktop::SafetyNumberDialog* dialog = nullptr;
    QTRY_VERIFY((dialog = alice_->findChild<desktop::SafetyNumberDialog*>("safetyNumberDialog")));
    QString digits;
    for (int i = 0; i < 12; ++i) {
      auto* group = child<QLabel>(dialog, qPrintable(QString("safetyGroup%1").arg(i)));
      QVERIFY(group);
      QCOMPARE(group->text().size(), 5);
      digits += group->text();
    }
    QCOMPARE(digits, QString::fromStdString((*number)->digits));
    QImage code = desktop::qr_code((*number)->scannable);
    if (code.isNull()) {
      // Built without libqrencode: the dialog says so.
      QVERIFY(child<QLabel>(dialog, "safetyQrMissing")->isVisible());
    } else {
      // The code on screen is the code of SafetyNumber::scannable, module for module.
      auto* qr = child<QLabel>(dialog, "safetyQr");
      QVERIFY(qr && qr->isVisible());
      QImage shown = qr->pixmap().toImage();
      QCOMPARE(shown.width(), shown.height());
      QCOMPARE(shown.width() % code.width(), 0);
      QVERIFY(shown.width() >= 150);  // big enough to scan
      int scale = shown.width() / code.width();
      for (int y = 0; y < code.height(); ++y)
        for (int x = 0; x < code.width(); ++x)
          QCOMPARE(qGray(shown.pixel(x * scale + scale / 2, y * scale + scale / 2)) < 128,
                   qGray(code.pixel(x, y)) < 128);
      QVERIFY(code.width() > 21 + 8);  // the data is in it: more than a version 1 code
    }
    // "Verified" is recorded in the profile (Client::verified), not only ticked on screen.
    auto* check = child<QCheckBox>(dialog, "verifiedCheck");
    QVERIFY(check);
    QTRY_VERIFY(check->isEnabled());
    QVERIFY(!check->isChecked());
    QTest::mouseClick(check, Qt::LeftButton);
    QVERIFY(check->isChecked());
    auto verified = std::make_shared<std::optional<bool>>();
    QTRY_VERIFY_WITH_TIMEOUT(([&] {
                               alice_->backend()->local(
                                   alice_.get(),
                                   [peer](Client& c) { return c.verified(peer); },
                                   [verified](Result<bool> r) { *verified = r.ok() && *r; });
                               return verified->value_or(false);
                             }()),
                             10000);
    dialog->close();
  }

  void search_finds_the_message_and_jumps_to_it() {
    QVERIFY(send(*bob_, "Let us meet at the harbour on Friday"));
    for (int i = 0; i < 60; ++i) QVERIFY(send(*bob_, QString("filler message number %1").arg(i)));
    auto* button = child<QToolButton>(alice_.get(), "searchButton");
    QTest::mouseClick(button, Qt::LeftButton);
    QVERIFY(child<QWidget>(alice_.get(), "searchPanel")->isVisible());
    auto* field = child<QLineEdit>(alice_.get(), "searchField");
    QTRY_VERIFY_WITH_TIMEOUT(
        row_with_text(alice_->chat()->message_model(), "filler message number 59") >= 0, 20000);
    QTest::keyClicks(field, "harbour");
    QTest::keyClick(field, Qt::Key_Return);
    auto* results = child<QListWidget>(alice_.get(), "searchResults");
    QTRY_COMPARE_WITH_TIMEOUT(results->count(), 1, 10000);
    auto* snippet = results->itemWidget(results->item(0))->findChild<QLabel*>("searchSnippet");
    QVERIFY(snippet->text().contains("font-weight:bold;'>harbour</span>"));
    // The message is older than the first page of history: the jump loads until it finds it.
    QString id = results->item(0)->data(Qt::UserRole + 1).toString();
    QTest::mouseClick(results->viewport(), Qt::LeftButton, {},
                      results->visualItemRect(results->item(0)).center());
    auto* model = alice_->chat()->message_model();
    QTRY_COMPARE_WITH_TIMEOUT(model->highlight(), id, 10000);
    auto* view = child<QListView>(alice_.get(), "messageList");
    QVERIFY(view->viewport()->rect().intersects(view->visualRect(model->index(model->row_of(id)))));
    QTest::mouseClick(button, Qt::LeftButton);
  }

  void the_chat_lays_its_bubbles_out_again_when_search_opens_and_closes() {
    // Search takes room from the chat, and gives it back: every row must be as tall as its
    // bubble at the width the chat has now, or bubbles overlap, or gaps stay between them.
    auto* view = child<QListView>(alice_.get(), "messageList");
    auto* delegate = qobject_cast<desktop::MessageDelegate*>(view->itemDelegate());
    auto* model = alice_->chat()->message_model();
    auto* panel = child<QWidget>(alice_.get(), "searchPanel");
    auto rows_fit = [&] {
      for (int i = 0; i < model->rowCount(); ++i) {
        QModelIndex index = model->index(i);
        if (view->visualRect(index).height() != delegate->sizeHint({}, index).height())
          return false;
        if (i > 0 &&
            view->visualRect(index).top() != view->visualRect(model->index(i - 1)).bottom() + 1)
          return false;
      }
      return true;
    };
    QVERIFY(!panel->isVisible());
    // The jump's highlight ends with a repaint that lays the rows out again: not that.
    QTRY_VERIFY_WITH_TIMEOUT(model->highlight().isEmpty(), 10000);
    QCoreApplication::sendPostedEvents(nullptr, QEvent::LayoutRequest);  // closed just before
    int wide = view->viewport()->width();
    alice_->chat()->set_search_visible(true);
    QTRY_VERIFY(view->viewport()->width() < wide);
    QTRY_VERIFY_WITH_TIMEOUT(rows_fit(), 2000);
    alice_->chat()->set_search_visible(false);
    QTRY_COMPARE(view->viewport()->width(), wide);
    QTRY_VERIFY_WITH_TIMEOUT(rows_fit(), 2000);
  }

  void group_made_in_its_dialog_reaches_the_member() {
    alice_->chat()->show_new_group();
    auto* dialog = alice_->findChild<desktop::NewGroupDialog*>("newGroupDialog");
    QVERIFY(dialog);
    QTest::keyClicks(child<QLineEdit>(dialog, "groupName"), "Weekend plans");
    auto* members = child<QListWidget>(dialog, "groupMembers");
    QTRY_COMPARE(members->count(), 1);
    members->item(0)->setCheckState(Qt::Checked);
    QTest::mouseClick(child<QPushButton>(dialog, "createGroupButton"), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(child<QLabel>(alice_.get(), "chatTitle")->text(),
                              QString("Weekend plans"), 20000);
    QTRY_VERIFY(child<QLabel>(alice_.get(), "chatSubtitle")->text().contains("2 members"));
    QVERIFY(send(*alice_, "Who is in for Saturday?"));
    if (!open_chat(*bob_, "Weekend plans")) {
      auto* m = bob_->chat()->conversation_model();
      for (int i = 0; i < m->rowCount(); ++i)
        qWarning() << "bob has" << m->data(m->index(i), Qt::DisplayRole).toString();
      QFAIL("bob has no conversation called Weekend plans");
    }
    QTRY_VERIFY_WITH_TIMEOUT(
        row_with_text(bob_->chat()->message_model(), "Who is in for Saturday?") >= 0, 20000);
    QTRY_COMPARE_WITH_TIMEOUT(status_of(*alice_, "Who is in for Saturday?"), MessageStatus::kRead,
                              20000);
    check_message_info(*alice_, "Who is in for Saturday?", {"@bob"});
  }

  void file_is_sent_with_progress_and_downloaded_intact() {
    QVERIFY(open_chat(*alice_, "@bob"));
    QImage img(640, 480, QImage::Format_RGB32);
    img.fill(QColor(0x33, 0x99, 0xcc));
    QString path = alice_dir_.filePath("photo.png");
    QVERIFY(img.save(path));
    QFile f(path);
    QVERIFY(f.open(QIODevice::ReadOnly));
    QByteArray original = f.readAll();
    alice_->chat()->send_file(path);
    auto* am = alice_->chat()->message_model();
    auto has_file = [](desktop::MessageModel* m) {
      for (int i = m->rowCount() - 1; i >= 0; --i)
        if (!m->at(i)->uploading && !m->at(i)->message.attachments.empty()) return i;
      return -1;
    };
    QTRY_VERIFY_WITH_TIMEOUT(has_file(am) >= 0, 30000);
    // Bob goes back to the 1:1 chat (he never added alice: it is named by her account id).
    auto* bob_list = bob_->chat()->conversation_model();
    QString direct;
    for (int i = 0; i < bob_list->rowCount(); ++i)
      if (bob_list->at(i)->kind == ConversationKind::kDirect)
        direct = bob_list->data(bob_list->index(i), Qt::DisplayRole).toString();
    QVERIFY(open_chat(*bob_, direct));
    auto* bm = bob_->chat()->message_model();
    QTRY_VERIFY_WITH_TIMEOUT(has_file(bm) >= 0, 30000);
    int row = has_file(bm);
    QCOMPARE(bm->at(row)->message.attachments[0].file_name, std::string("photo.png"));
    QCOMPARE(bm->at(row)->message.attachments[0].width, 640u);
    QVERIFY(!bm->at(row)->message.attachments[0].thumbnail.empty());
    bob_->chat()->download(row, 0);
    QTRY_VERIFY_WITH_TIMEOUT(bm->at(row)->message.attachments[0].stored, 30000);
    // Shown from the profile's encrypted copy, decrypted into memory only.
    QTRY_VERIFY_WITH_TIMEOUT(!bm->at(row)->images.value(0).isNull(), 30000);
    QCOMPARE(bm->at(row)->images.value(0).size(), QSize(640, 480));
    // Saved where the user chose.
    QString saved = bob_dir_.filePath("saved-photo.png");
    bob_->chat()->save_attachment(row, 0, saved, /*open_after=*/false);
    QTRY_VERIFY_WITH_TIMEOUT(!bm->at(row)->transferring && QFile::exists(saved), 30000);
    QFile got(saved);
    QVERIFY(got.open(QIODevice::ReadOnly));
    QCOMPARE(got.readAll(), original);
    QVERIFY(bm->at(row)->error.isEmpty());
  }

  void passphrase_is_changed_from_the_menu() {
    alice_->findChild<QAction*>("changePassphraseAction")->trigger();
    auto* shown = alice_->findChild<desktop::ChangePassphraseDialog*>("changePassphraseDialog");
    QVERIFY(shown);
    QVERIFY(shown->isVisible());
    QPointer dialog = shown;
    int result = -1;
    connect(dialog, &QDialog::finished, this, [&](int r) { result = r; });
    auto* field = child<QLineEdit>(dialog, "newPassphrase");
    auto* again = child<QLineEdit>(dialog, "newPassphraseConfirm");
    QTest::keyClicks(field, "a new passphrase");
    QTest::keyClicks(again, "a new passphrasf");
    QTest::mouseClick(child<QPushButton>(dialog, "changePassphraseButton"), Qt::LeftButton);
    QCOMPARE(child<QLabel>(dialog, "passphraseError")->text(),
             QString("The two passphrases differ."));
    again->clear();
    QTest::keyClicks(again, "a new passphrase");
    QTest::mouseClick(child<QPushButton>(dialog, "changePassphraseButton"), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(result, int(QDialog::Accepted), 20000);

    // Opened again: the old passphrase is refused, the new one opens the profile.
    QString url = QString::fromStdString(relay_->ws_url());
    alice_ = std::make_unique<AppWindow>(QDir(alice_dir_.path()), url);
    alice_->show();
    QVERIFY(!open_profile(*alice_, "correct horse battery"));
    QVERIFY(open_profile(*alice_, "a new passphrase"));
    QCOMPARE(alice_->backend()->handle(), QString("alice"));
  }

  void log_out_takes_a_second_device_out_of_the_account() {
    // A second device of alice's account, linked from this one.
    AppWindow linked(QDir(linked_dir_.path()), QString::fromStdString(relay_->ws_url()));
    linked.show();
    QTest::keyClicks(child<QLineEdit>(&linked, "passphrase"), "linked passphrase");
    QTest::keyClicks(child<QLineEdit>(&linked, "passphraseConfirm"), "linked passphrase");
    QTest::mouseClick(child<QPushButton>(&linked, "openButton"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(child<QLineEdit>(&linked, "handle")->isVisible(), 20000);
    QTest::mouseClick(child<QPushButton>(&linked, "linkButton"), Qt::LeftButton);
    auto* invite = child<QLabel>(&linked, "inviteText");
    QTRY_VERIFY_WITH_TIMEOUT(invite->text().count('-') >= 3, 20000);
    std::optional<Status> approved;
    alice_->backend()->remote(
        alice_.get(), [text = invite->text().toStdString()](Client& c) { return c.approve_link(text); },
        [&](Status s) { approved = s; });
    QTRY_VERIFY_WITH_TIMEOUT(approved.has_value(), 20000);
    QVERIFY2(approved->ok(), approved->error().message.c_str());
    QTRY_VERIFY_WITH_TIMEOUT(linked.on_chat(), 20000);

    linked.findChild<QAction*>("logOutAction")->trigger();
    auto* box = linked.findChild<QMessageBox*>("confirmLogOut");
    QVERIFY(box);
    QVERIFY2(box->text().contains("@alice"), qPrintable(box->text()));
    QTest::mouseClick(box->findChild<QPushButton*>("confirmLogOutButton"), Qt::LeftButton);
    // Back on the first screen, the profile erased.
    QTRY_VERIFY_WITH_TIMEOUT(
        child<QLabel>(linked.welcome(), "welcomeNotice")->text().contains("Logged out"), 20000);
    QVERIFY(!linked.on_chat() && linked.welcome()->isVisible() && linked.welcome()->isEnabled());
    QVERIFY(!QDir(linked_dir_.filePath("profiles/default")).exists());
    QVERIFY(child<QLineEdit>(linked.welcome(), "passphraseConfirm")->isVisible());  // new profile
    // The account has one device again.
    std::optional<size_t> devices;
    alice_->backend()->remote(
        alice_.get(), [](Client& c) { return c.devices(); },
        [&](Result<std::vector<DeviceInfo>> d) { devices = d.ok() ? d->size() : 0; });
    QTRY_VERIFY_WITH_TIMEOUT(devices.has_value(), 20000);
    QCOMPARE(*devices, size_t{1});
  }

  void the_only_device_offers_to_delete_the_account_instead() {
    alice_->findChild<QAction*>("logOutAction")->trigger();
    auto* box = alice_->findChild<QMessageBox*>("confirmLogOut");
    QVERIFY(box);
    QTest::mouseClick(box->findChild<QPushButton*>("confirmLogOutButton"), Qt::LeftButton);
    QMessageBox* only = nullptr;
    QTRY_VERIFY_WITH_TIMEOUT((only = alice_->findChild<QMessageBox*>("onlyDeviceBox")), 20000);
    QVERIFY2(only->text().contains("only device of @alice"), qPrintable(only->text()));
    QVERIFY(alice_->on_chat());
    QTest::mouseClick(only->findChild<QPushButton*>("offerDeleteAccountButton"), Qt::LeftButton);
    QMessageBox* confirm = nullptr;
    QTRY_VERIFY((confirm = alice_->findChild<QMessageBox*>("confirmDeleteAccount")));
    QVERIFY2(confirm->text().contains("@alice") && confirm->text().contains("cannot be undone"),
             qPrintable(confirm->text()));
    QTest::mouseClick(confirm->findChild<QPushButton*>("deleteAccountButton"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(
        child<QLabel>(alice_->welcome(), "welcomeNotice")->text().contains("@alice was deleted"),
        20000);
    QVERIFY(!alice_->on_chat() && alice_->welcome()->isVisible() && alice_->welcome()->isEnabled());
    QVERIFY(!QDir(alice_dir_.filePath("profiles/default")).exists());
    // The relay forgot the account: its handle is free, here in the same window.
    QString why;
    QVERIFY2(create_account(*alice_, "alice", &why), qPrintable(why));
  }

  void wrong_passphrase_is_refused_with_a_clear_message() {
    // A second window on bob's data dir while bob's profile is open elsewhere: the profile is
    // busy; close bob first so the passphrase itself is what is checked.
    bob_.reset();
    AppWindow again(QDir(bob_dir_.path()), QString::fromStdString(relay_->ws_url()));
    again.show();
    auto* pass = child<QLineEdit>(&again, "passphrase");
    QVERIFY(!child<QLineEdit>(&again, "passphraseConfirm")->isVisible());
    QTest::keyClicks(pass, "not the passphrase");
    QTest::mouseClick(child<QPushButton>(&again, "openButton"), Qt::LeftButton);
    QLabel* error = nullptr;
    QTRY_VERIFY_WITH_TIMEOUT(
        [&] {
          for (auto* l : again.findChildren<QLabel*>())
            if (l->isVisible() && l->text() == "Wrong passphrase.") error = l;
          return error != nullptr;
        }(),
        20000);
    QVERIFY(!again.on_chat());
  }

 private:
  // Opens the info of the read outgoing message `text` and checks it names each of `readers`
  // (and no account id) with a read receipt and its time.
  void check_message_info(AppWindow& w, const QString& text, const QStringList& readers) {
    auto* model = w.chat()->message_model();
    int row = row_with_text(model, text);
    QVERIFY(row >= 0);
    w.chat()->show_message_info(QString::fromStdString(model->at(row)->message.id));
    auto* dialog = w.findChild<desktop::MessageInfoDialog*>("messageInfoDialog");
    QVERIFY(dialog);
    QVERIFY(dialog->isVisible());
    QTRY_COMPARE(child<QLabel>(dialog, "messageInfoStatus")->text(), QString("Read"));
    QCOMPARE(child<QLabel>(dialog, "messageInfoText")->text(), text);
    QVERIFY(!child<QLabel>(dialog, "messageInfoSent")->text().isEmpty());
    auto* receipts = child<QTreeWidget>(dialog, "receiptList");
    QCOMPARE(receipts->topLevelItemCount(), static_cast<int>(readers.size()));
    for (int i = 0; i < receipts->topLevelItemCount(); ++i) {
      QTreeWidgetItem* item = receipts->topLevelItem(i);
      QVERIFY2(readers.contains(item->text(0)), qPrintable(item->text(0)));
      QCOMPARE(item->text(1), QString("Read"));
      QVERIFY(!item->text(2).isEmpty());
    }
    dialog->close();
    QTRY_VERIFY(!w.findChild<desktop::MessageInfoDialog*>("messageInfoDialog"));
  }

  // Opens the profile already in the window's data dir; false with "Wrong passphrase." shown.
  bool open_profile(AppWindow& w, const QString& passphrase) {
    auto* field = child<QLineEdit>(&w, "passphrase");
    if (!field || child<QLineEdit>(&w, "passphraseConfirm")->isVisible()) return false;
    QTest::keyClicks(field, passphrase);
    QTest::mouseClick(child<QPushButton>(&w, "openButton"), Qt::LeftButton);
    wait_for([&] {
      if (w.on_chat()) return true;
      for (auto* l : w.findChildren<QLabel*>())
        if (l->isVisible() && l->text() == "Wrong passphrase.") return true;
      return false;
    });
    return w.on_chat();
  }

  std::unique_ptr<RelayProcess> relay_;
  QTemporaryDir alice_dir_, bob_dir_, linked_dir_;
  std::unique_ptr<AppWindow> alice_, bob_;
};

}  // namespace sotto::test

int main(int argc, char** argv) {
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  sotto::desktop::theme::apply(app);
  sotto::test::DesktopTest test;
  return QTest::qExec(&test, argc, argv);
}

#include "Desktop_test.moc"
