// Drives sotto-desktop's real windows as a person would (typing into fields, clicking), for
// the QTest tests and the screenshot tool. Each step waits, bounded, for what it caused.
#pragma once

#include <QAbstractItemView>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QPushButton>
#include <QTest>
#include <QToolButton>

#include "AppWindow.h"
#include "Backend.h"
#include "ChatWindow.h"
#include "Models.h"

namespace sotto::test {

using desktop::AppWindow;

// Waits for `pred` while the event loop runs; false after `ms`.
template <class Pred>
bool wait_for(Pred pred, int ms = 20000) {
  return QTest::qWaitFor(pred, ms);
}

template <class T>
T* child(QWidget* root, const char* name) {
  return root->findChild<T*>(name);
}

inline bool fail(QString* why, const QString& what) {
  *why = what;
  return false;
}

// First run: a new profile with a passphrase, then an account with `handle`.
inline bool create_account(AppWindow& w, const QString& handle, QString* why) {
  auto* pass = child<QLineEdit>(&w, "passphrase");
  auto* confirm = child<QLineEdit>(&w, "passphraseConfirm");
  auto* open = child<QPushButton>(&w, "openButton");
  if (!pass || !confirm || !open) return fail(why, "no first-run form");
  QTest::keyClicks(pass, "correct horse battery");
  QTest::keyClicks(confirm, "correct horse battery");
  QTest::mouseClick(open, Qt::LeftButton);
  auto* field = child<QLineEdit>(&w, "handle");
  if (!wait_for([&] { return field->isVisible(); })) return fail(why, "the profile did not open");
  QTest::keyClicks(field, handle);
  QTest::mouseClick(child<QPushButton>(&w, "registerButton"), Qt::LeftButton);
  if (!wait_for([&] { return w.on_chat(); })) return fail(why, "registration did not finish");
  if (!wait_for([&] { return w.backend()->connection_state() == ConnectionState::kOnline; }))
    return fail(why, "not online");
  return true;
}

// Types "@handle" into the new-chat field and presses Enter.
inline bool start_chat(AppWindow& w, const QString& handle) {
  auto* field = child<QLineEdit>(&w, "newChat");
  QTest::keyClicks(field, handle);
  QTest::keyClick(field, Qt::Key_Return);
  auto* title = child<QLabel>(&w, "chatTitle");
  return wait_for([&] { return title->text() == handle && w.chat()->current() != 0; });
}

inline int row_with_text(desktop::MessageModel* m, const QString& text) {
  for (int i = 0; i < m->rowCount(); ++i)
    if (m->data(m->index(i), Qt::DisplayRole).toString() == text) return i;
  return -1;
}

// Types into the composer and presses Enter; waits until the message is in the chat.
inline bool send(AppWindow& w, const QString& text) {
  auto* composer = child<QLineEdit>(&w, "composer");
  QTest::keyClicks(composer, text);
  QTest::keyClick(composer, Qt::Key_Return);
  return wait_for([&] { return row_with_text(w.chat()->message_model(), text) >= 0; });
}

// Clicks the conversation called `title` in the sidebar.
inline bool open_chat(AppWindow& w, const QString& title) {
  auto* list = child<QListView>(&w, "conversationList");
  auto* model = w.chat()->conversation_model();
  int row = -1;
  if (!wait_for([&] {
        for (int i = 0; i < model->rowCount(); ++i)
          if (model->data(model->index(i), Qt::DisplayRole).toString() == title) row = i;
        return row >= 0;
      }))
    return false;
  QRect r = list->visualRect(model->index(row));
  QTest::mouseClick(list->viewport(), Qt::LeftButton, {}, r.center());
  auto* label = child<QLabel>(&w, "chatTitle");
  return wait_for([&] { return label->text() == title; });
}

inline MessageStatus status_of(AppWindow& w, const QString& text) {
  auto* m = w.chat()->message_model();
  int row = row_with_text(m, text);
  if (row < 0) return MessageStatus::kFailed;
  return static_cast<MessageStatus>(
      m->data(m->index(row), desktop::MessageModel::kStatusRole).toInt());
}

}  // namespace sotto::test
