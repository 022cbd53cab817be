#include "drop_zone.h"

#include <QDragEnterEvent>
#include <QFileInfo>
#include <QMimeData>
#include <QPainter>
#include <QVBoxLayout>

DropZone::DropZone(QWidget* parent) : QWidget(parent) {
  setAcceptDrops(true);
  auto* lay = new QVBoxLayout(this);
  lay->addStretch(1);
  hint_ = new QLabel(tr("<div style='font-size:15pt'><b>Drop a GGUF model here</b></div>"
                        "<div style='margin-top:8px'>or click to choose a file "
                        "(File \u2192 Open, Ctrl+O)</div>"
                        "<div style='margin-top:8px'>The file is validated "
                        "before anything is loaded: you see its model card first.</div>"),
                     this);
  hint_->setAlignment(Qt::AlignCenter);
  hint_->setWordWrap(true);
  lay->addWidget(hint_);
  error_ = new QLabel(this);
  error_->setAlignment(Qt::AlignCenter);
  error_->setWordWrap(true);
  error_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  applyColors();
  error_->setObjectName("dropError");
  error_->hide();
  lay->addWidget(error_);
  lay->addStretch(1);
  setMinimumSize(360, 240);
}

bool DropZone::darkPalette(const QPalette& p) {
  return p.color(QPalette::Window).lightness() < 128;
}

QColor DropZone::errorColor(const QPalette& p) {
  // Contrast of at least 4.5:1 (WCAG AA for text) on the theme's window colour and on the drop
  // highlight's tint over it (dark: 255,138,128 gave 4.3:1 on the tint).
  return darkPalette(p) ? QColor(255, 168, 160) : QColor(176, 0, 32);
}

void DropZone::applyColors() {
  error_->setStyleSheet(QString("color:%1; margin:12px;").arg(errorColor(palette()).name()));
}

void DropZone::changeEvent(QEvent* e) {
  if (e->type() == QEvent::PaletteChange || e->type() == QEvent::ApplicationPaletteChange) {
    applyColors();
    update();
  }
  QWidget::changeEvent(e);
}

void DropZone::setError(const QString& message) {
  error_->setText(message);
  error_->setVisible(!message.isEmpty());
}

QString DropZone::errorText() const {
  return error_->isHidden() ? QString() : error_->text();
}

QString DropZone::localFileFromUrls(const QList<QUrl>& urls, int* count) {
  if (count) *count = int(urls.size());
  for (const QUrl& u : urls)
    if (u.isLocalFile()) return u.toLocalFile();
  return {};
}

void DropZone::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), palette().window());
  p.setRenderHint(QPainter::Antialiasing);
  QPen pen(hover_ ? palette().highlight().color() : palette().mid().color(), 2, Qt::DashLine);
  p.setPen(pen);
  // A translucent tint of the highlight keeps the hint text readable in light and dark themes.
  QColor tint = palette().highlight().color();
  tint.setAlpha(48);
  p.setBrush(hover_ ? QBrush(tint) : QBrush(Qt::NoBrush));
  p.drawRoundedRect(rect().adjusted(12, 12, -12, -12), 12, 12);
}

void DropZone::dragEnterEvent(QDragEnterEvent* e) {
  if (e->mimeData()->hasUrls() && !localFileFromUrls(e->mimeData()->urls()).isEmpty()) {
    hover_ = true;
    update();
    e->acceptProposedAction();
  }
}

void DropZone::dragLeaveEvent(QDragLeaveEvent*) {
  hover_ = false;
  update();
}

void DropZone::dropEvent(QDropEvent* e) {
  hover_ = false;
  update();
  int n = 0;
  const QString path = localFileFromUrls(e->mimeData()->urls(), &n);
  if (path.isEmpty()) return;
  e->acceptProposedAction();
  emit fileDropped(path, n);
}

void DropZone::mouseReleaseEvent(QMouseEvent* e) {
  if (e->button() == Qt::LeftButton) emit openRequested();
}
