// How rows look: the sidebar's conversations and the chat's bubbles.
//
// Thread rule: GUI thread.
#pragma once

#include <QStyledItemDelegate>

#include "Models.h"

class QListView;

namespace sotto::desktop {

// An attachment the chat shows as a picture (by its type or its name).
bool is_image(const Attachment& a);

class ConversationDelegate : public QStyledItemDelegate {
  Q_OBJECT

 public:
  explicit ConversationDelegate(QObject* parent = nullptr) : QStyledItemDelegate(parent) {}
  void paint(QPainter* p, const QStyleOptionViewItem& option,
             const QModelIndex& index) const override;
  QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override;
};

class MessageDelegate : public QStyledItemDelegate {
  Q_OBJECT

 public:
  MessageDelegate(QListView* view, const ConversationListModel* names, QObject* parent = nullptr)
      : QStyledItemDelegate(parent), view_(view), names_(names) {}
  void paint(QPainter* p, const QStyleOptionViewItem& option,
             const QModelIndex& index) const override;
  QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override;
  // Which attachment of the row at `index` is under `pos` (viewport coordinates), or -1.
  int attachment_at(const QModelIndex& index, const QRect& item_rect, const QPoint& pos) const;
  // The text of the row at `index` as the bubble shows it at the view's width, one string per
  // line (a line keeps the spaces it ends with).
  QStringList text_lines(const QModelIndex& index) const;

 private:
  struct Layout;
  Layout layout(const QModelIndex& index, int width) const;
  QString sender_name(const Message& m) const;
  static QString text_of(const Message& m);
  QFont text_font(const Message& m) const;
  static int text_width(int view_width);  // the widest a bubble's text may be

  QListView* view_;
  const ConversationListModel* names_;
};

}  // namespace sotto::desktop
