// How the desktop app looks: colours, the style sheet, avatars and the small line icons (drawn
// here, so the app needs no icon theme and looks the same everywhere).
//
// Thread rule: GUI thread.
#pragma once

#include <QColor>
#include <QIcon>
#include <QPixmap>
#include <QString>

class QApplication;
class QPainter;
class QRectF;

namespace sotto::desktop::theme {

inline const QColor kAccent{0x25, 0x63, 0xeb};
inline const QColor kAccentSoft{0xe8, 0xf0, 0xfe};
inline const QColor kText{0x1c, 0x1e, 0x21};
inline const QColor kMuted{0x6b, 0x72, 0x80};
inline const QColor kBorder{0xe3, 0xe6, 0xea};
inline const QColor kSidebar{0xff, 0xff, 0xff};
inline const QColor kChatBackground{0xf2, 0xf4, 0xf7};
inline const QColor kBubbleIn{0xff, 0xff, 0xff};
inline const QColor kBubbleOut{0xd8, 0xe9, 0xff};
inline const QColor kRead{0x1d, 0x8c, 0xf0};
inline const QColor kOnline{0x22, 0xc5, 0x5e};
inline const QColor kHighlight{0xff, 0xe0, 0x66};
inline const QColor kDanger{0xdc, 0x26, 0x26};

// Fusion style, palette, font and the style sheet for the whole app.
void apply(QApplication& app);

// A stable colour for a name (the same person always gets the same avatar colour).
QColor color_for(const QString& key);
// Initials for an avatar: "@bob" -> "B", "Weekend plans" -> "WP".
QString initials(const QString& title);
// Paints a round avatar with initials, and a presence dot when `online`.
void paint_avatar(QPainter& p, const QRectF& rect, const QString& title, const QString& key,
                  bool group, bool online);
// The app's mark: a speech bubble with a keyhole on the accent colour.
QPixmap logo(int size);
QPixmap avatar(const QString& title, const QString& key, int size, bool group = false,
               bool online = false);

enum class Icon {
  kSearch,
  kShield,
  kInfo,
  kGear,
  kPlus,
  kSend,
  kAttach,
  kGroup,
  kClose,
  kFile,
  kEdit,
  kDownload
};
QIcon icon(Icon which, const QColor& color = kMuted, int size = 20);

}  // namespace sotto::desktop::theme
