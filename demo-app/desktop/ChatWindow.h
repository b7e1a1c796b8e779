// The main screen: conversations on the left, the open chat in the middle (bubbles, typing,
// composer with attachments), and the search panel on the right.
//
// Thread rule: GUI thread. Every Client call goes through the Backend (off this thread).
#pragma once

#include <QHash>
#include <QSettings>
#include <QTimer>
#include <QWidget>
#include <functional>

#include "Models.h"

class QLabel;
class QLineEdit;
class QListView;
class QListWidget;
class QStackedWidget;
class QToolButton;
class QPushButton;

namespace sotto::desktop {

class Backend;
class MessageDelegate;

class ChatWindow : public QWidget {
  Q_OBJECT

 public:
  ChatWindow(Backend* backend, QSettings* settings, QWidget* parent = nullptr);

  // Called once the account is ready: loads conversations and contacts.
  void start();
  ConversationId current() const { return messages_.conversation(); }
  void open_conversation(ConversationId id, std::function<void()> then = {});
  // Opens the conversation, finds the message in history and shows it highlighted.
  void jump_to(ConversationId conversation, const QString& message_id);

  ConversationListModel* conversation_model() { return &conversations_; }
  MessageModel* message_model() { return &messages_; }

  // Dialogs, shown with open() (they are children of this window).
  void show_settings();
  void show_new_group();
  void show_info();
  // Sent time, status and each recipient's receipt of an outgoing message of this chat.
  void show_message_info(const QString& message_id);
  // The account actions of the app's menu (the gear). Log out and delete ask first; once done
  // they emit account_closed().
  void show_change_passphrase();
  void log_out();
  void delete_account();
  void show_safety_number(const QString& account, const QString& handle);
  void set_search_visible(bool visible);
  void run_search(const QString& text);
  // Sends a file to the open conversation (what the attach button's file dialog calls).
  void send_file(const QString& path);
  // What a click on an attachment does: downloads attachment `attachment` of message row
  // `row` (the profile keeps it encrypted), or, once it is here, asks where to save it, saves
  // it there and opens the saved file.
  void download(int row, int attachment);
  // Decrypts a downloaded attachment into `destination`, the file the user chose; opens it
  // afterwards when `open_after`.
  void save_attachment(int row, int attachment, const QString& destination, bool open_after);

 signals:
  // This device left the account (log out) or the account is gone (delete): the app closes
  // the Client, erases the profile and shows `notice` on the first screen.
  void account_closed(const QString& notice);

 protected:
  // Clicks on attachments, and the message list's width changes.
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  QWidget* build_sidebar();
  QWidget* build_chat();
  QWidget* build_search();

  void refresh_conversations();
  void refresh_names();
  void update_header();
  void update_connection_label();
  void send_current();
  void attach_file();
  void load_older(std::function<void()> then = {});
  void mark_read();
  void scroll_to_bottom();
  bool near_bottom() const;
  void message_menu(const QPoint& pos);
  // Pictures among the attachments of rows first..last, decrypted into memory for display.
  void load_images(int first, int last);
  void typing_changed(ConversationId c, const QString& account, bool typing);
  void composer_edited();

  Backend* backend_;
  QSettings* settings_;
  ConversationListModel conversations_;
  MessageModel messages_;
  QHash<QString, QString> names_;                         // account -> "@handle"
  QHash<ConversationId, QHash<QString, qint64>> typing_;  // conversation -> account -> until
  std::vector<ConversationId> watched_;
  bool loading_older_ = false;
  bool relayout_pending_ = false;  // the message list is laid out again after a width change
  bool typing_sent_ = false;
  qint64 typing_sent_at_ = 0;
  std::optional<GroupInfo> group_;

  QTimer refresh_timer_;
  QTimer typing_timer_;
  QTimer highlight_timer_;

  // Sidebar.
  QLabel* me_avatar_;
  QLabel* me_name_;
  QLabel* connection_label_;
  QLineEdit* new_chat_;
  QLabel* new_chat_error_;
  QListView* conversation_list_;
  // Chat.
  QStackedWidget* chat_stack_;
  QLabel* chat_avatar_;
  QLabel* chat_title_;
  QLabel* chat_subtitle_;
  QToolButton* search_button_;
  QToolButton* safety_button_;
  QToolButton* info_button_;
  QListView* message_list_;
  MessageDelegate* message_delegate_;
  QLabel* typing_label_;
  QLineEdit* composer_;
  QToolButton* attach_button_;
  QToolButton* send_button_;
  // Search.
  QWidget* search_panel_;
  QLineEdit* search_field_;
  QListWidget* search_results_;
  QLabel* search_status_;
  QTimer search_timer_;
};

}  // namespace sotto::desktop
