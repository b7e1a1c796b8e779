#include "Models.h"

#include <QDateTime>
#include <algorithm>

namespace sotto::desktop {

// ---- conversations -------------------------------------------------------------------------

void ConversationListModel::set_conversations(std::vector<Conversation> list) {
  // Same conversations in the same order: update in place, so the selection stays put.
  bool same = list.size() == list_.size();
  for (size_t i = 0; same && i < list.size(); ++i) same = list[i].id == list_[i].id;
  if (same) {
    list_ = std::move(list);
    if (!list_.empty()) emit dataChanged(index(0), index(static_cast<int>(list_.size()) - 1));
    return;
  }
  beginResetModel();
  list_ = std::move(list);
  endResetModel();
}

const Conversation* ConversationListModel::at(int row) const {
  if (row < 0 || row >= static_cast<int>(list_.size())) return nullptr;
  return &list_[static_cast<size_t>(row)];
}

int ConversationListModel::row_of(ConversationId id) const {
  for (size_t i = 0; i < list_.size(); ++i)
    if (list_[i].id == id) return static_cast<int>(i);
  return -1;
}

void ConversationListModel::set_presence(const QString& account, const Presence& p) {
  presence_[account] = p;
  for (size_t i = 0; i < list_.size(); ++i)
    if (QString::fromStdString(list_[i].peer) == account)
      emit dataChanged(index(static_cast<int>(i)), index(static_cast<int>(i)));
}

void ConversationListModel::set_typing(ConversationId id, bool typing) {
  if (typing == typing_.contains(id)) return;
  if (typing)
    typing_.insert(id);
  else
    typing_.remove(id);
  int row = row_of(id);
  if (row >= 0) emit dataChanged(index(row), index(row));
}

int ConversationListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(list_.size());
}

QVariant ConversationListModel::data(const QModelIndex& idx, int role) const {
  const Conversation* c = at(idx.row());
  if (!c) return {};
  switch (role) {
    case Qt::DisplayRole:
    case Qt::AccessibleTextRole:
      return QString::fromStdString(c->title);
    case kIdRole:
      return QVariant::fromValue<qint64>(c->id);
    case kUnreadRole:
      return c->unread;
    default:
      return {};
  }
}

// ---- messages ------------------------------------------------------------------------------

void MessageModel::reset(ConversationId conversation, bool group,
                         const std::vector<Message>& newest_first, const std::string& cursor) {
  beginResetModel();
  conversation_ = conversation;
  group_ = group;
  rows_.clear();
  for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it)
    rows_.push_back(MessageRow{*it, false, false, 0, 0, {}, {}});
  cursor_ = cursor;
  highlight_.clear();
  endResetModel();
}

void MessageModel::prepend_older(const std::vector<Message>& newest_first,
                                 const std::string& cursor) {
  cursor_ = cursor;
  if (newest_first.empty()) return;
  beginInsertRows({}, 0, static_cast<int>(newest_first.size()) - 1);
  std::vector<MessageRow> older;
  for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it)
    older.push_back(MessageRow{*it, false, false, 0, 0, {}, {}});
  rows_.insert(rows_.begin(), older.begin(), older.end());
  endInsertRows();
}

void MessageModel::clear() {
  beginResetModel();
  conversation_ = 0;
  rows_.clear();
  cursor_.clear();
  endResetModel();
}

void MessageModel::upsert(const Message& m) {
  if (m.conversation != conversation_) return;
  int existing = row_of(QString::fromStdString(m.id));
  if (existing >= 0) {
    auto& row = rows_[static_cast<size_t>(existing)];
    row.message = m;
    row_changed(existing);
    return;
  }
  // Usually the newest: search from the end.
  size_t pos = rows_.size();
  while (pos > 0 && !rows_[pos - 1].uploading && time_of(rows_[pos - 1].message) > time_of(m))
    --pos;
  beginInsertRows({}, static_cast<int>(pos), static_cast<int>(pos));
  rows_.insert(rows_.begin() + static_cast<std::ptrdiff_t>(pos),
               MessageRow{m, false, false, 0, 0, {}, {}});
  endInsertRows();
}

void MessageModel::set_status(const QString& id, MessageStatus status) {
  int row = row_of(id);
  if (row < 0) return;
  rows_[static_cast<size_t>(row)].message.status = status;
  row_changed(row);
}

void MessageModel::remove(const QString& id) {
  int row = row_of(id);
  if (row < 0) return;
  beginRemoveRows({}, row, row);
  rows_.erase(rows_.begin() + row);
  endRemoveRows();
}

int MessageModel::row_of(const QString& id) const {
  std::string key = id.toStdString();
  for (size_t i = rows_.size(); i > 0; --i)
    if (rows_[i - 1].message.id == key) return static_cast<int>(i - 1);
  return -1;
}

const MessageRow* MessageModel::at(int row) const {
  if (row < 0 || row >= static_cast<int>(rows_.size())) return nullptr;
  return &rows_[static_cast<size_t>(row)];
}

MessageRow* MessageModel::mutable_at(int row) {
  if (row < 0 || row >= static_cast<int>(rows_.size())) return nullptr;
  return &rows_[static_cast<size_t>(row)];
}

void MessageModel::row_changed(int row) { emit dataChanged(index(row), index(row)); }

QString MessageModel::add_upload(const QString& file_name, quint64 size) {
  MessageRow row;
  row.uploading = true;
  row.transferring = true;
  row.total = size;
  row.message.id = "upload-" + std::to_string(next_upload_++);
  row.message.conversation = conversation_;
  row.message.outgoing = true;
  row.message.status = MessageStatus::kPending;
  row.message.sent_ms = static_cast<uint64_t>(QDateTime::currentMSecsSinceEpoch());
  Attachment a;
  a.file_name = file_name.toStdString();
  a.size = size;
  row.message.attachments.push_back(a);
  beginInsertRows({}, static_cast<int>(rows_.size()), static_cast<int>(rows_.size()));
  rows_.push_back(row);
  endInsertRows();
  return QString::fromStdString(row.message.id);
}

QString MessageModel::newest_incoming() const {
  for (size_t i = rows_.size(); i > 0; --i)
    if (!rows_[i - 1].message.outgoing && !rows_[i - 1].uploading)
      return QString::fromStdString(rows_[i - 1].message.id);
  return {};
}

bool MessageModel::day_break(int row) const {
  if (row <= 0) return true;
  auto day = [](uint64_t ms) {
    return QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(ms)).date();
  };
  return day(time_of(rows_[static_cast<size_t>(row)].message)) !=
         day(time_of(rows_[static_cast<size_t>(row - 1)].message));
}

void MessageModel::set_highlight(const QString& id) {
  int old = row_of(highlight_);
  highlight_ = id;
  if (old >= 0) row_changed(old);
  int now = row_of(id);
  if (now >= 0) row_changed(now);
}

int MessageModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}

QVariant MessageModel::data(const QModelIndex& idx, int role) const {
  const MessageRow* r = at(idx.row());
  if (!r) return {};
  switch (role) {
    case Qt::DisplayRole:
    case Qt::AccessibleTextRole:
      return QString::fromStdString(r->message.text);
    case kIdRole:
      return QString::fromStdString(r->message.id);
    case kStatusRole:
      return static_cast<int>(r->message.status);
    case kOutgoingRole:
      return r->message.outgoing;
    default:
      return {};
  }
}

}  // namespace sotto::desktop
