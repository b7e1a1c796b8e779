#include "Delegates.h"

#include <QDateTime>
#include <QFileInfo>
#include <QImage>
#include <QListView>
#include <QPainter>
#include <QPainterPath>
#include <QPixmapCache>
#include <QRegularExpression>
#include <QTextLayout>
#include <cmath>
#include <memory>

#include "AppSupport.h"
#include "Theme.h"

namespace sotto::desktop {
namespace {

constexpr int kSide = 18;  // space between the bubbles and the view's edges
constexpr int kPadX = 12;  // inside a bubble
constexpr int kPadY = 8;
constexpr int kGap = 4;         // between rows
constexpr int kDayHeight = 40;  // the date line
constexpr int kFileW = 260;     // a file card
constexpr int kFileH = 52;
constexpr int kImageMaxW = 260;  // an image preview
constexpr int kImageMaxH = 220;

QFont small_font(const QFont& base) {
  QFont f = base;
  f.setPointSizeF(base.pointSizeF() * 0.8);
  return f;
}

QString day_label(uint64_t ms) {
  QDate d = QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(ms)).date();
  QDate today = QDate::currentDate();
  if (d == today) return QObject::tr("Today");
  if (d == today.addDays(-1)) return QObject::tr("Yesterday");
  return QLocale().toString(d, "dddd, d MMMM yyyy");
}

// The picture to show for image attachment `index` of a row: the image once the ChatWindow
// decrypted it into memory, else the thumbnail.
QPixmap image_of(const MessageRow& row, int index) {
  const Attachment& a = row.message.attachments[static_cast<size_t>(index)];
  auto full = row.images.find(index);
  if (full != row.images.end() && !full->isNull()) {
    QString key = "image:" + QString::fromStdString(row.message.id) + ":" + QString::number(index);
    QPixmap pm;
    if (QPixmapCache::find(key, &pm)) return pm;
    pm = QPixmap::fromImage(full->scaled(kImageMaxW * 2, kImageMaxH * 2, Qt::KeepAspectRatio,
                                         Qt::SmoothTransformation));
    QPixmapCache::insert(key, pm);
    return pm;
  }
  if (!a.thumbnail.empty()) {
    QImage img;
    img.loadFromData(a.thumbnail.data(), static_cast<int>(a.thumbnail.size()));
    if (!img.isNull()) return QPixmap::fromImage(img);
  }
  return {};
}

// A message's text laid out in `width`: lines break between words, and inside a word only when
// the word alone is longer than a line (a long link, say). QPainter's flags offer either
// breaking anywhere (which split ordinary words) or never inside a word (which let long ones
// run out of the bubble), not this.
std::unique_ptr<QTextLayout> wrap_text(QString text, const QFont& font, int width) {
  text.replace('\n', QChar::LineSeparator);
  auto layout = std::make_unique<QTextLayout>(text, font);
  QTextOption option;
  option.setWrapMode(QTextOption::WrapAtWordBoundaryOrAnywhere);
  layout->setTextOption(option);
  layout->beginLayout();
  qreal y = 0;
  for (QTextLine line = layout->createLine(); line.isValid(); line = layout->createLine()) {
    line.setLineWidth(width);
    line.setPosition(QPointF(0, y));
    y += line.height();
  }
  layout->endLayout();
  return layout;
}

QSize text_size(const QTextLayout& layout) {
  qreal w = 0, h = 0;
  for (int i = 0; i < layout.lineCount(); ++i) {
    w = std::max(w, layout.lineAt(i).naturalTextWidth());
    h += layout.lineAt(i).height();
  }
  return {static_cast<int>(std::ceil(w)), static_cast<int>(std::ceil(h))};
}

QSize image_size(const Attachment& a, const QPixmap& pm) {
  double w = a.width ? a.width : pm.width(), h = a.height ? a.height : pm.height();
  if (w <= 0 || h <= 0) return {kImageMaxW, kImageMaxW * 3 / 4};
  double scale = std::min({1.0 * kImageMaxW / w, 1.0 * kImageMaxH / h, 1.0});
  if (w * scale < 120) scale = 120 / w;
  return {static_cast<int>(w * scale), static_cast<int>(std::min(h * scale, 1.0 * kImageMaxH))};
}

}  // namespace

bool is_image(const Attachment& a) {
  return QString::fromStdString(a.content_type).startsWith("image/") ||
         QString::fromStdString(a.file_name)
             .contains(QRegularExpression("\\.(png|jpe?g|gif|bmp|webp)$",
                                          QRegularExpression::CaseInsensitiveOption));
}

// ---- conversations -------------------------------------------------------------------------

QSize ConversationDelegate::sizeHint(const QStyleOptionViewItem&, const QModelIndex&) const {
  return {280, 68};
}

void ConversationDelegate::paint(QPainter* p, const QStyleOptionViewItem& option,
                                 const QModelIndex& index) const {
  auto* model = static_cast<const ConversationListModel*>(index.model());
  const Conversation* c = model->at(index.row());
  if (!c) return;
  p->save();
  p->setRenderHint(QPainter::Antialiasing);
  QRect r = option.rect;
  if (option.state & QStyle::State_Selected)
    p->fillRect(r, theme::kAccentSoft);
  else if (option.state & QStyle::State_MouseOver)
    p->fillRect(r, QColor(0xf6, 0xf7, 0xf9));

  bool group = c->kind == ConversationKind::kGroup;
  QString title = QString::fromStdString(c->title);
  QString peer = QString::fromStdString(c->peer);
  bool online = !group && model->presence(peer).online;
  theme::paint_avatar(*p, QRectF(r.left() + 14, r.top() + 12, 44, 44), title, group ? title : peer,
                      group, online);

  int x = r.left() + 70, right = r.right() - 14;
  QFont base = option.font;
  QFont bold = base;
  bold.setBold(true);
  QFont small = small_font(base);

  // Time, top right.
  uint64_t when = c->last_message ? (c->last_message->sort_ms ? c->last_message->sort_ms
                                                              : c->last_message->sent_ms)
                                  : c->last_activity_ms;
  QString time = QString::fromStdString(app::format_time(when, app::now_ms()));
  p->setFont(small);
  QFontMetrics sfm(small);
  int tw = sfm.horizontalAdvance(time);
  p->setPen(c->unread ? theme::kAccent : theme::kMuted);
  p->drawText(QRect(right - tw, r.top() + 14, tw, sfm.height()), Qt::AlignRight, time);

  // Title.
  p->setFont(bold);
  p->setPen(theme::kText);
  QFontMetrics bfm(bold);
  p->drawText(QRect(x, r.top() + 12, right - tw - 8 - x, bfm.height()), Qt::AlignLeft,
              bfm.elidedText(title, Qt::ElideRight, right - tw - 8 - x));

  // Unread badge, bottom right.
  int badge_w = 0;
  if (c->unread) {
    QString n = c->unread > 99 ? "99+" : QString::number(c->unread);
    p->setFont(small);
    badge_w = std::max(20, sfm.horizontalAdvance(n) + 12);
    QRectF badge(right - badge_w, r.top() + 38, badge_w, 20);
    p->setPen(Qt::NoPen);
    p->setBrush(theme::kAccent);
    p->drawRoundedRect(badge, 10, 10);
    QFont bf = small;
    bf.setBold(true);
    p->setFont(bf);
    p->setPen(Qt::white);
    p->drawText(badge, Qt::AlignCenter, n);
  }

  // Last message or "typing…".
  QString preview;
  QColor color = theme::kMuted;
  QFont pf = base;
  if (model->typing(c->id)) {
    preview = QObject::tr("typing…");
    color = theme::kAccent;
    pf.setItalic(true);
  } else if (c->last_message) {
    const Message& m = *c->last_message;
    if (m.deleted)
      preview = QObject::tr("Message deleted");
    else if (!m.text.empty())
      preview = QString::fromStdString(m.text).simplified();
    else if (!m.attachments.empty())
      preview =
          QString::fromUtf8("\U0001F4CE ") + QString::fromStdString(m.attachments[0].file_name);
    if (m.outgoing) {
      preview = QObject::tr("You: ") + preview;
    } else if (group && m.kind == MessageKind::kText) {
      QString who = model->name_of(QString::fromStdString(m.sender));
      if (!who.isEmpty()) preview = who + ": " + preview;
    }
  } else if (group) {
    preview = QObject::tr("Group created");
  }
  p->setFont(pf);
  p->setPen(color);
  QFontMetrics pfm(pf);
  int pw = right - x - (badge_w ? badge_w + 8 : 0);
  p->drawText(QRect(x, r.top() + 38, pw, pfm.height()), Qt::AlignLeft,
              pfm.elidedText(preview, Qt::ElideRight, pw));
  p->restore();
}

// ---- messages ------------------------------------------------------------------------------

struct MessageDelegate::Layout {
  int height = 0;
  bool day = false;
  bool notice = false;
  QRect bubble;  // relative to the item's top-left
  QRect sender;
  std::vector<QRect> attachments;
  QRect text;
  QRect footer;
  QString footer_text;
};

QString MessageDelegate::text_of(const Message& m) {
  return m.deleted ? tr("This message was deleted") : QString::fromStdString(m.text);
}

QFont MessageDelegate::text_font(const Message& m) const {
  QFont f = view_->font();
  f.setItalic(m.deleted);
  return f;
}

int MessageDelegate::text_width(int view_width) {
  return std::min(560, static_cast<int>(view_width * 0.68)) - 2 * kPadX;
}

QStringList MessageDelegate::text_lines(const QModelIndex& index) const {
  const MessageRow* row = static_cast<const MessageModel*>(index.model())->at(index.row());
  if (!row) return {};
  QString text = text_of(row->message);
  auto layout = wrap_text(text, text_font(row->message), text_width(view_->viewport()->width()));
  QStringList lines;
  for (int i = 0; i < layout->lineCount(); ++i)
    lines << text.mid(layout->lineAt(i).textStart(), layout->lineAt(i).textLength());
  return lines;
}

QString MessageDelegate::sender_name(const Message& m) const {
  QString n = names_ ? names_->name_of(QString::fromStdString(m.sender)) : QString();
  return n.isEmpty() ? QString::fromStdString(m.sender.substr(0, 8)) : n;
}

MessageDelegate::Layout MessageDelegate::layout(const QModelIndex& index, int width) const {
  Layout l;
  auto* model = static_cast<const MessageModel*>(index.model());
  const MessageRow* row = model->at(index.row());
  if (!row) return l;
  const Message& m = row->message;
  QFont small = small_font(view_->font());
  QFontMetrics sfm(small);
  int y = 0;
  if (model->day_break(index.row())) {
    l.day = true;
    y += kDayHeight;
  }
  if (m.kind == MessageKind::kNotice) {
    l.notice = true;
    QRect t = sfm.boundingRect(QRect(0, 0, width - 120, 10000), Qt::TextWordWrap,
                               QString::fromStdString(m.text));
    int w = t.width() + 28, h = t.height() + 12;
    l.bubble = QRect((width - w) / 2, y + 4, w, h);
    l.text = l.bubble.adjusted(14, 6, -14, -6);
    l.height = y + h + 8 + kGap;
    return l;
  }
  int max_w = text_width(width);
  int content_w = 0, cy = kPadY;
  if (model->is_group() && !m.outgoing) {
    QFont bold = small;
    bold.setBold(true);
    QFontMetrics bfm(bold);
    l.sender = QRect(kPadX, cy, bfm.horizontalAdvance(sender_name(m)), bfm.height());
    content_w = std::max(content_w, l.sender.width());
    cy += bfm.height() + 2;
  }
  if (!m.deleted) {
    for (size_t i = 0; i < m.attachments.size(); ++i) {
      const Attachment& a = m.attachments[i];
      QSize s(kFileW, kFileH);
      if (is_image(a)) {
        QPixmap pm = image_of(*row, static_cast<int>(i));
        if (!pm.isNull() || a.width) s = image_size(a, pm);
      }
      s.setWidth(std::min(s.width(), max_w));
      l.attachments.push_back(QRect(kPadX, cy, s.width(), s.height()));
      content_w = std::max(content_w, s.width());
      cy += s.height() + 6;
    }
  }
  QString text = text_of(m);
  int text_lines = 0;
  if (!text.isEmpty()) {
    auto wrapped = wrap_text(text, text_font(m), max_w);
    text_lines = wrapped->lineCount();
    QSize t = text_size(*wrapped);
    l.text = QRect(kPadX, cy, t.width(), t.height());
    content_w = std::max(content_w, t.width());
    cy += t.height() + 2;
  }
  // Footer: "edited  14:05 ✓✓".
  QString footer;
  if (m.edited_ms && !m.deleted) footer += tr("edited") + "  ";
  if (m.expires_ms) footer += QString::fromUtf8("\u23F1 ");
  footer += QString::fromStdString(app::format_clock(m.sort_ms ? m.sort_ms : m.sent_ms));
  int ticks_w = m.outgoing ? sfm.horizontalAdvance(QString::fromUtf8("\u2713\u2713")) + 4 : 0;
  int fw = sfm.horizontalAdvance(footer) + ticks_w;
  if (row->error.size()) fw = std::max(fw, sfm.horizontalAdvance(row->error));
  // The footer sits beside the last text line when there is room, else below it.
  bool inline_footer =
      text_lines == 1 && l.attachments.empty() && l.text.width() + fw + 12 <= max_w;
  if (inline_footer) {
    content_w = l.text.width() + 12 + fw;
    l.footer = QRect(kPadX + content_w - fw, l.text.bottom() - sfm.height() + 1, fw, sfm.height());
  } else {
    content_w = std::max(content_w, fw);
    l.footer = QRect(kPadX + content_w - fw, cy, fw, sfm.height());
    cy += sfm.height();
  }
  l.footer_text = footer;
  int bw = content_w + 2 * kPadX, bh = std::max(cy, l.footer.bottom() + 1) + kPadY;
  int bx = m.outgoing ? width - kSide - bw : kSide;
  l.bubble = QRect(bx, y + 2, bw, bh);
  // Content rects were relative to the bubble; move them.
  auto shift = [&](QRect& r) { r.translate(bx, y + 2); };
  shift(l.sender);
  shift(l.text);
  shift(l.footer);
  for (auto& a : l.attachments) shift(a);
  l.height = y + bh + 4 + kGap;
  return l;
}

QSize MessageDelegate::sizeHint(const QStyleOptionViewItem&, const QModelIndex& index) const {
  int w = view_->viewport()->width();
  return {w, layout(index, w).height};
}

int MessageDelegate::attachment_at(const QModelIndex& index, const QRect& item_rect,
                                   const QPoint& pos) const {
  Layout l = layout(index, item_rect.width());
  for (size_t i = 0; i < l.attachments.size(); ++i)
    if (l.attachments[i].translated(item_rect.topLeft()).contains(pos)) return static_cast<int>(i);
  return -1;
}

void MessageDelegate::paint(QPainter* p, const QStyleOptionViewItem& option,
                            const QModelIndex& index) const {
  auto* model = static_cast<const MessageModel*>(index.model());
  const MessageRow* row = model->at(index.row());
  if (!row) return;
  const Message& m = row->message;
  Layout l = layout(index, option.rect.width());
  p->save();
  p->setRenderHint(QPainter::Antialiasing);
  p->translate(option.rect.topLeft());
  QFont base = view_->font();
  QFont small = small_font(base);
  QFontMetrics sfm(small);

  if (l.day) {
    QString label = day_label(m.sort_ms ? m.sort_ms : m.sent_ms);
    int w = sfm.horizontalAdvance(label) + 24;
    QRectF pill((option.rect.width() - w) / 2.0, 10, w, 22);
    p->setPen(Qt::NoPen);
    p->setBrush(QColor(0xe4, 0xe7, 0xec));
    p->drawRoundedRect(pill, 11, 11);
    p->setFont(small);
    p->setPen(theme::kMuted);
    p->drawText(pill, Qt::AlignCenter, label);
  }

  bool highlighted =
      !model->highlight().isEmpty() && model->highlight() == QString::fromStdString(m.id);
  if (l.notice) {
    p->setPen(Qt::NoPen);
    p->setBrush(QColor(0xfd, 0xf6, 0xe3));
    p->drawRoundedRect(l.bubble, 10, 10);
    p->setFont(small);
    p->setPen(QColor(0x92, 0x6b, 0x12));
    p->drawText(l.text, Qt::TextWordWrap | Qt::AlignCenter, QString::fromStdString(m.text));
    p->restore();
    return;
  }

  // The bubble, with a little shadow.
  p->setPen(Qt::NoPen);
  p->setBrush(QColor(0, 0, 0, 14));
  p->drawRoundedRect(QRectF(l.bubble).translated(0, 1), 12, 12);
  p->setBrush(highlighted ? theme::kHighlight : m.outgoing ? theme::kBubbleOut : theme::kBubbleIn);
  p->drawRoundedRect(QRectF(l.bubble), 12, 12);

  if (!l.sender.isNull()) {
    QFont bold = small;
    bold.setBold(true);
    p->setFont(bold);
    p->setPen(theme::color_for(QString::fromStdString(m.sender)).darker(120));
    p->drawText(l.sender, Qt::AlignLeft, sender_name(m));
  }

  for (size_t i = 0; i < l.attachments.size() && i < m.attachments.size(); ++i) {
    const Attachment& a = m.attachments[i];
    QRect r = l.attachments[i];
    QPixmap pm = is_image(a) ? image_of(*row, static_cast<int>(i)) : QPixmap();
    if (!pm.isNull()) {
      QPainterPath clip;
      clip.addRoundedRect(QRectF(r), 8, 8);
      p->save();
      p->setClipPath(clip);
      p->drawPixmap(r, pm);
      p->restore();
    } else {
      p->setPen(Qt::NoPen);
      p->setBrush(m.outgoing ? QColor(0xc3, 0xdb, 0xfb) : QColor(0xf1, 0xf3, 0xf6));
      p->drawRoundedRect(QRectF(r), 8, 8);
      QRectF circle(r.left() + 8, r.top() + 8, 36, 36);
      p->setBrush(theme::kAccent);
      p->drawEllipse(circle);
      bool here = a.stored || row->uploading;
      theme::icon(here ? theme::Icon::kFile : theme::Icon::kDownload, Qt::white, 20)
          .paint(p, circle.adjusted(8, 8, -8, -8).toRect());
      QFont nf = base;
      nf.setBold(true);
      QFontMetrics nfm(nf);
      p->setFont(nf);
      p->setPen(theme::kText);
      int tx = r.left() + 52, tw = r.right() - 8 - tx;
      p->drawText(QRect(tx, r.top() + 8, tw, nfm.height()), Qt::AlignLeft,
                  nfm.elidedText(QString::fromStdString(a.file_name), Qt::ElideMiddle, tw));
      p->setFont(small);
      p->setPen(theme::kMuted);
      QString sub = QString::fromStdString(app::format_size(a.size));
      if (!row->error.isEmpty())
        sub = row->error;
      else if (row->transferring && row->total)
        sub = QString::fromStdString(app::format_size(row->done) + " of " +
                                     app::format_size(row->total));
      else if (!a.stored)
        sub += tr(" · click to download");
      else
        sub += tr(" · click to save");
      p->drawText(QRect(tx, r.top() + 28, tw, sfm.height()), Qt::AlignLeft, sub);
    }
    if (row->transferring) {
      QRectF bar(r.left() + 52, r.bottom() - 6, r.width() - 60, 4);
      if (!pm.isNull()) bar = QRectF(r.left() + 8, r.bottom() - 10, r.width() - 16, 4);
      p->setPen(Qt::NoPen);
      p->setBrush(QColor(255, 255, 255, 190));
      p->drawRoundedRect(bar, 2, 2);
      double f = row->total ? 1.0 * row->done / row->total : 0;
      p->setBrush(theme::kAccent);
      p->drawRoundedRect(QRectF(bar.left(), bar.top(), bar.width() * f, bar.height()), 2, 2);
    }
  }

  if (!l.text.isNull()) {
    p->setPen(m.deleted ? theme::kMuted : theme::kText);
    // Laid out again at the width layout() measured it in: the same lines.
    wrap_text(text_of(m), text_font(m), text_width(option.rect.width()))
        ->draw(p, l.text.topLeft());
  }

  p->setFont(small);
  p->setPen(theme::kMuted);
  QRect f = l.footer;
  if (!row->error.isEmpty() && l.attachments.empty()) {
    p->setPen(theme::kDanger);
    p->drawText(f, Qt::AlignRight, row->error);
  } else if (m.outgoing) {
    int ticks_w = sfm.horizontalAdvance(QString::fromUtf8("\u2713\u2713")) + 4;
    p->drawText(QRect(f.left(), f.top(), f.width() - ticks_w, f.height()), Qt::AlignRight,
                l.footer_text);
    QString ticks;
    QColor tc = theme::kMuted;
    switch (m.status) {
      case MessageStatus::kPending:
        ticks = QString::fromUtf8("\u25F7");
        break;
      case MessageStatus::kSent:
        ticks = QString::fromUtf8("\u2713");
        break;
      case MessageStatus::kDelivered:
        ticks = QString::fromUtf8("\u2713\u2713");
        break;
      case MessageStatus::kRead:
        ticks = QString::fromUtf8("\u2713\u2713");
        tc = theme::kRead;
        break;
      case MessageStatus::kFailed:
        ticks = "!";
        tc = theme::kDanger;
        break;
      default:
        break;
    }
    QFont tf = small;
    tf.setBold(true);
    p->setFont(tf);
    p->setPen(tc);
    p->drawText(QRect(f.right() - ticks_w + 4, f.top(), ticks_w, f.height()), Qt::AlignLeft, ticks);
  } else {
    p->drawText(f, Qt::AlignRight, l.footer_text);
  }
  p->restore();
}

}  // namespace sotto::desktop
