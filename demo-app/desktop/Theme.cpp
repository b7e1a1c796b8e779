#include "Theme.h"

#include <QApplication>
#include <QCryptographicHash>
#include <QFont>
#include <QPainter>
#include <QPainterPath>
#include <QPalette>
#include <QRegularExpression>
#include <QStyleFactory>

namespace sotto::desktop::theme {

void apply(QApplication& app) {
  app.setStyle(QStyleFactory::create("Fusion"));
  QPalette pal = app.palette();
  pal.setColor(QPalette::Window, Qt::white);
  pal.setColor(QPalette::Base, Qt::white);
  pal.setColor(QPalette::AlternateBase, kChatBackground);
  pal.setColor(QPalette::Text, kText);
  pal.setColor(QPalette::WindowText, kText);
  pal.setColor(QPalette::ButtonText, kText);
  pal.setColor(QPalette::Button, QColor(0xf6, 0xf7, 0xf9));
  pal.setColor(QPalette::Highlight, kAccent);
  pal.setColor(QPalette::HighlightedText, Qt::white);
  pal.setColor(QPalette::PlaceholderText, QColor(0x9c, 0xa3, 0xaf));
  app.setPalette(pal);
  QFont f("DejaVu Sans");
  f.setPointSizeF(10);
  app.setFont(f);
  app.setStyleSheet(QStringLiteral(R"(
    QLineEdit, QPlainTextEdit, QSpinBox {
      border: 1px solid #d9dde3; border-radius: 8px; padding: 7px 10px; background: white;
      min-height: 20px;
      selection-background-color: #2563eb;
    }
    QComboBox {
      border: 1px solid #d9dde3; border-radius: 8px; padding: 7px 10px; background: white;
      min-height: 20px;
    }
    QComboBox::drop-down { border: none; width: 26px; }
    QLineEdit:focus, QPlainTextEdit:focus { border: 1px solid #2563eb; }
    QPushButton {
      border: 1px solid #d9dde3; border-radius: 8px; padding: 7px 16px; background: #f6f7f9;
      min-height: 20px;
    }
    QPushButton:hover { background: #eef0f3; }
    QPushButton:disabled { color: #a0a6ae; }
    QPushButton[primary="true"] {
      background: #2563eb; color: white; border: 1px solid #2563eb; font-weight: bold;
    }
    QPushButton[primary="true"]:hover { background: #1d4ed8; }
    QPushButton[primary="true"]:disabled { background: #93b4f5; border-color: #93b4f5; }
    QPushButton[flat="true"] { border: none; background: transparent; color: #2563eb; }
    QPushButton[danger="true"] { color: #dc2626; }
    QPushButton[danger="true"]:disabled { color: #eba9a9; }
    QToolButton { border: none; border-radius: 8px; padding: 6px; background: transparent; }
    QToolButton:hover { background: #eef0f3; }
    QToolButton:checked { background: #e8f0fe; }
    QListView, QListWidget { border: none; outline: none; }
    QScrollBar:vertical { width: 10px; background: transparent; margin: 2px; }
    QScrollBar::handle:vertical { background: #c9ced6; border-radius: 4px; min-height: 30px; }
    QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical { height: 0; }
    QScrollBar::add-page:vertical, QScrollBar::sub-page:vertical { background: transparent; }
    QLabel[muted="true"] { color: #6b7280; }
    QLabel[error="true"] { color: #dc2626; }
    QLabel[title="true"] { font-size: 15pt; font-weight: bold; }
    QFrame[card="true"] { background: white; border: 1px solid #e3e6ea; border-radius: 14px; }
    QCheckBox { spacing: 8px; }
    QTabWidget::pane { border: none; }
    QTabBar::tab { padding: 8px 16px; border: none; color: #6b7280; }
    QTabBar::tab:selected { color: #2563eb; border-bottom: 2px solid #2563eb; }
    QProgressBar { border: none; background: #e5e7eb; border-radius: 3px; height: 6px; }
    QProgressBar::chunk { background: #2563eb; border-radius: 3px; }
  )"));
}

QColor color_for(const QString& key) {
  static const QColor palette[] = {QColor(0xef, 0x44, 0x44), QColor(0xf9, 0x73, 0x16),
                                   QColor(0xea, 0xb3, 0x08), QColor(0x22, 0xc5, 0x5e),
                                   QColor(0x14, 0xb8, 0xa6), QColor(0x06, 0xb6, 0xd4),
                                   QColor(0x3b, 0x82, 0xf6), QColor(0x63, 0x66, 0xf1),
                                   QColor(0xa8, 0x55, 0xf7), QColor(0xec, 0x48, 0x99)};
  QByteArray h = QCryptographicHash::hash(key.toUtf8(), QCryptographicHash::Sha256);
  return palette[static_cast<unsigned char>(h[0]) % std::size(palette)];
}

QString initials(const QString& title) {
  QString t = title;
  if (t.startsWith('@')) t = t.mid(1);
  const auto parts = t.split(QRegularExpression("[\\s_.]+"), Qt::SkipEmptyParts);
  QString out;
  if (parts.size() >= 2 && t.contains(' ')) {
    out = QString(parts[0][0]) + parts[1][0];
  } else if (!t.isEmpty()) {
    out = t.left(1);
  } else {
    out = "?";
  }
  return out.toUpper();
}

void paint_avatar(QPainter& p, const QRectF& r, const QString& title, const QString& key,
                  bool group, bool online) {
  p.save();
  p.setRenderHint(QPainter::Antialiasing);
  p.setPen(Qt::NoPen);
  p.setBrush(color_for(key.isEmpty() ? title : key));
  p.drawEllipse(r);
  QFont f = p.font();
  f.setBold(true);
  f.setPixelSize(static_cast<int>(r.height() * (group ? 0.34 : 0.42)));
  p.setFont(f);
  p.setPen(Qt::white);
  p.drawText(r, Qt::AlignCenter, initials(title));
  if (online) {
    qreal d = r.width() * 0.3;
    QRectF dot(r.right() - d + 1, r.bottom() - d + 1, d, d);
    p.setBrush(kOnline);
    p.setPen(QPen(Qt::white, 2));
    p.drawEllipse(dot);
  }
  p.restore();
}

QPixmap logo(int size) {
  QPixmap pm(size * 2, size * 2);
  pm.setDevicePixelRatio(2);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setRenderHint(QPainter::Antialiasing);
  qreal s = size;
  p.setPen(Qt::NoPen);
  p.setBrush(kAccent);
  p.drawEllipse(QRectF(0, 0, s, s));
  // A speech bubble with a keyhole: a private conversation.
  QPainterPath bubble;
  bubble.addRoundedRect(QRectF(s * 0.22, s * 0.26, s * 0.56, s * 0.4), s * 0.12, s * 0.12);
  QPainterPath tail;
  tail.moveTo(s * 0.34, s * 0.6);
  tail.lineTo(s * 0.3, s * 0.78);
  tail.lineTo(s * 0.5, s * 0.64);
  p.setBrush(Qt::white);
  p.drawPath(bubble.united(tail));
  p.setBrush(kAccent);
  p.drawEllipse(QPointF(s * 0.5, s * 0.42), s * 0.06, s * 0.06);
  p.drawRect(QRectF(s * 0.475, s * 0.44, s * 0.05, s * 0.12));
  return pm;
}

QPixmap avatar(const QString& title, const QString& key, int size, bool group, bool online) {
  QPixmap pm(size * 2, size * 2);
  pm.setDevicePixelRatio(2);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  paint_avatar(p, QRectF(0, 0, size, size), title, key, group, online);
  return pm;
}

QIcon icon(Icon which, const QColor& color, int size) {
  QPixmap pm(size * 2, size * 2);
  pm.setDevicePixelRatio(2);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setRenderHint(QPainter::Antialiasing);
  qreal s = size;
  QPen pen(color, s / 12.0, Qt::SolidLine, Qt::RoundCap, Qt::RoundJoin);
  p.setPen(pen);
  p.setBrush(Qt::NoBrush);
  switch (which) {
    case Icon::kSearch:
      p.drawEllipse(QRectF(s * 0.18, s * 0.18, s * 0.5, s * 0.5));
      p.drawLine(QPointF(s * 0.6, s * 0.6), QPointF(s * 0.84, s * 0.84));
      break;
    case Icon::kShield: {
      QPainterPath path;
      path.moveTo(s * 0.5, s * 0.12);
      path.lineTo(s * 0.82, s * 0.25);
      path.cubicTo(s * 0.82, s * 0.6, s * 0.68, s * 0.78, s * 0.5, s * 0.9);
      path.cubicTo(s * 0.32, s * 0.78, s * 0.18, s * 0.6, s * 0.18, s * 0.25);
      path.closeSubpath();
      p.drawPath(path);
      p.drawPolyline(QPolygonF{QPointF(s * 0.36, s * 0.5), QPointF(s * 0.47, s * 0.61),
                               QPointF(s * 0.65, s * 0.4)});
      break;
    }
    case Icon::kInfo:
      p.drawEllipse(QRectF(s * 0.14, s * 0.14, s * 0.72, s * 0.72));
      p.drawLine(QPointF(s * 0.5, s * 0.46), QPointF(s * 0.5, s * 0.66));
      p.setBrush(color);
      p.drawEllipse(QPointF(s * 0.5, s * 0.33), s * 0.02, s * 0.02);
      break;
    case Icon::kGear: {
      p.drawEllipse(QPointF(s * 0.5, s * 0.5), s * 0.13, s * 0.13);
      for (int i = 0; i < 8; ++i) {
        qreal a = i * M_PI / 4;
        p.drawLine(QPointF(s * 0.5 + std::cos(a) * s * 0.24, s * 0.5 + std::sin(a) * s * 0.24),
                   QPointF(s * 0.5 + std::cos(a) * s * 0.36, s * 0.5 + std::sin(a) * s * 0.36));
      }
      p.drawEllipse(QPointF(s * 0.5, s * 0.5), s * 0.25, s * 0.25);
      break;
    }
    case Icon::kPlus:
      p.drawLine(QPointF(s * 0.5, s * 0.22), QPointF(s * 0.5, s * 0.78));
      p.drawLine(QPointF(s * 0.22, s * 0.5), QPointF(s * 0.78, s * 0.5));
      break;
    case Icon::kSend: {
      QPainterPath path;
      path.moveTo(s * 0.16, s * 0.2);
      path.lineTo(s * 0.86, s * 0.5);
      path.lineTo(s * 0.16, s * 0.8);
      path.lineTo(s * 0.26, s * 0.5);
      path.closeSubpath();
      p.setBrush(color);
      p.drawPath(path);
      break;
    }
    case Icon::kAttach: {
      QPainterPath path;
      path.moveTo(s * 0.62, s * 0.3);
      path.lineTo(s * 0.62, s * 0.66);
      path.arcTo(QRectF(s * 0.34, s * 0.52, s * 0.28, s * 0.28), 0, -180);
      path.lineTo(s * 0.34, s * 0.24);
      path.arcTo(QRectF(s * 0.34, s * 0.1, s * 0.4, s * 0.28), 180, -180);
      path.lineTo(s * 0.74, s * 0.66);
      p.drawPath(path);
      break;
    }
    case Icon::kGroup:
      p.drawEllipse(QPointF(s * 0.38, s * 0.36), s * 0.13, s * 0.13);
      p.drawArc(QRectF(s * 0.14, s * 0.56, s * 0.48, s * 0.4), 0, 180 * 16);
      p.drawEllipse(QPointF(s * 0.68, s * 0.4), s * 0.1, s * 0.1);
      p.drawArc(QRectF(s * 0.54, s * 0.58, s * 0.34, s * 0.3), 0, 180 * 16);
      break;
    case Icon::kClose:
      p.drawLine(QPointF(s * 0.28, s * 0.28), QPointF(s * 0.72, s * 0.72));
      p.drawLine(QPointF(s * 0.72, s * 0.28), QPointF(s * 0.28, s * 0.72));
      break;
    case Icon::kFile: {
      QPainterPath path;
      path.moveTo(s * 0.24, s * 0.1);
      path.lineTo(s * 0.58, s * 0.1);
      path.lineTo(s * 0.78, s * 0.3);
      path.lineTo(s * 0.78, s * 0.9);
      path.lineTo(s * 0.24, s * 0.9);
      path.closeSubpath();
      p.drawPath(path);
      p.drawPolyline(QPolygonF{QPointF(s * 0.58, s * 0.1), QPointF(s * 0.58, s * 0.3),
                               QPointF(s * 0.78, s * 0.3)});
      break;
    }
    case Icon::kEdit:
      p.drawLine(QPointF(s * 0.22, s * 0.78), QPointF(s * 0.72, s * 0.28));
      p.drawLine(QPointF(s * 0.22, s * 0.78), QPointF(s * 0.2, s * 0.8));
      p.drawLine(QPointF(s * 0.3, s * 0.86), QPointF(s * 0.8, s * 0.86));
      break;
    case Icon::kDownload:
      p.drawLine(QPointF(s * 0.5, s * 0.16), QPointF(s * 0.5, s * 0.66));
      p.drawPolyline(QPolygonF{QPointF(s * 0.3, s * 0.46), QPointF(s * 0.5, s * 0.66),
                               QPointF(s * 0.7, s * 0.46)});
      p.drawLine(QPointF(s * 0.22, s * 0.84), QPointF(s * 0.78, s * 0.84));
      break;
  }
  return QIcon(pm);
}

}  // namespace sotto::desktop::theme
