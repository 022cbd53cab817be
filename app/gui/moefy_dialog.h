// File -> Convert to Mixture-of-Experts…: the GUI of `moelab-cli moefy` (method and errors in
// moelab/runtime/moefy.h). The conversion runs on a worker thread with a progress bar; Cancel
// stops it (no output file is left) and closes the dialog when nothing runs.
#pragma once

#include <QDialog>
#include <QString>
#include <atomic>
#include <memory>
#include <thread>

class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace moelab::lab {

class MoefyDialog : public QDialog {
  Q_OBJECT
 public:
  /// `model`: the dense model to convert (prefills the fields; output defaults to
  /// <stem>.moefied.gguf beside it).
  explicit MoefyDialog(const QString& model, QWidget* parent = nullptr);
  ~MoefyDialog() override;

  QLineEdit* modelEdit() const { return model_; }
  QLineEdit* calibEdit() const { return calib_; }
  QLineEdit* outputEdit() const { return output_; }
  QSpinBox* expertsBox() const { return experts_; }
  QSpinBox* sharedBox() const { return shared_; }
  QSpinBox* topKBox() const { return topK_; }
  QComboBox* methodBox() const { return method_; }
  QProgressBar* progressBar() const { return progress_; }
  QLabel* statusLabel() const { return status_; }
  bool running() const { return running_; }

  /// The calibration text shipped with moelab (resources/moefy/calib.txt beside the source
  /// tree or the installed share folder); empty when not found.
  static QString defaultCalibText();

 public slots:
  /// Starts the conversion with the fields' values (ignored while one runs).
  void start();
  /// Asks a running conversion to stop; closes the dialog when none runs.
  void cancel();

 signals:
  /// The conversion ended: ok with the written file, or not with the error / "cancelled".
  void finished(bool ok, const QString& outputOrError);
  void progressed(int percent, const QString& stage);

 private:
  void done(bool ok, const QString& text);
  QLineEdit *model_, *calib_, *output_;
  QSpinBox *experts_, *shared_, *topK_;
  QComboBox *method_, *layout_;
  QProgressBar* progress_;
  QLabel* status_;
  QPushButton *convert_, *cancel_;
  bool running_ = false;
  std::shared_ptr<std::atomic<bool>> stop_;
  std::thread worker_;
};

}  // namespace moelab::lab
