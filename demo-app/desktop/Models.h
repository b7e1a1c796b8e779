// The list models behind the sidebar (conversations) and the chat view (messages).
//
// Thread rule: GUI thread. They hold copies of what the Backend's calls returned.
#pragma once

#include <QAbstractListModel>
#include <QHash>
#include <QImage>
#include <QSet>
#include <QString>
#include <vector>

#include "sotto/Client.h"

namespace sotto::desktop {

struct Presence {
  bool online = false;
  quint64 last_seen_ms = 0;
};

class ConversationListModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Role { kIdRole = Qt::UserRole + 1, kUnreadRole };
  explicit ConversationListModel(QObject* parent = nullptr) : QAbstractListModel(parent) {}

  void set_conversations(std::vector<Conversation> list);
  const Conversation* at(int row) const;
  int row_of(ConversationId id) const;
  void set_presence(const QString& account, const Presence& p);
  Presence presence(const QString& account) const { return presence_.value(account); }
  void set_typing(ConversationId id, bool typing);
  bool typing(ConversationId id) const { return typing_.contains(id); }
  // Names of group members and contacts, account -> "@handle".
  void set_names(QHash<QString, QString> names) { names_ = std::move(names); }
  QString name_of(const QString& account) const { return names_.value(account); }

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;

 private:
  std::vector<Conversation> list_;
  QHash<QString, Presence> presence_;
  QSet<ConversationId> typing_;
  QHash<QString, QString> names_;
};

// One row of the chat view: a message, or a file of ours still uploading.
struct MessageRow {
  Message message;
  bool uploading = false;       // a local row until send_file() returns
  bool transferring = false;    // an upload or a download under way
  quint64 done = 0, total = 0;  // its progress
  QString error;                // a transfer that failed
  // Attachments shown as pictures, by index: decrypted from the profile into memory only
  // (Client::read_attachment), never to a file.
  QHash<int, QImage> images;
};

class MessageModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Role { kIdRole = Qt::UserRole + 1, kStatusRole, kOutgoingRole };
  explicit MessageModel(QObject* parent = nullptr) : QAbstractListModel(parent) {}

  ConversationId conversation() const { return conversation_; }
  bool is_group() const { return group_; }
  // A new conversation: `newest_first` is the first page of history.
  void reset(ConversationId conversation, bool group, const std::vector<Message>& newest_first,
             const std::string& cursor);
  // An older page, shown above what is there.
  void prepend_older(const std::vector<Message>& newest_first, const std::string& cursor);
  const std::string& cursor() const { return cursor_; }
  void clear();

  // Adds a message in time order, or replaces the row with the same id.
  void upsert(const Message& m);
  void set_status(const QString& id, MessageStatus status);
  void remove(const QString& id);
  int row_of(const QString& id) const;
  const MessageRow* at(int row) const;
  MessageRow* mutable_at(int row);
  void row_changed(int row);
  // A local row for a file being sent; replaced by the real message once it is sent.
  QString add_upload(const QString& file_name, quint64 size);
  // The newest incoming message (for mark_read), or "".
  QString newest_incoming() const;
  // True when `row` starts a new day (the chat shows a date line above it).
  bool day_break(int row) const;
  // The row search jumped to, drawn highlighted for a moment.
  void set_highlight(const QString& id);
  const QString& highlight() const { return highlight_; }

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;

 private:
  static uint64_t time_of(const Message& m) { return m.sort_ms ? m.sort_ms : m.sent_ms; }

  ConversationId conversation_ = 0;
  bool group_ = false;
  std::vector<MessageRow> rows_;  // oldest first
  std::string cursor_;
  QString highlight_;
  int next_upload_ = 1;
};

}  // namespace sotto::desktop
