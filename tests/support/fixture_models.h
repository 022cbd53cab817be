// The fixture models of ../shared: fixtures/models (oracle llama.cpp c392e50) and
// fixtures/models-0c1e570 (the Turn-2 architectures, oracle llama.cpp 0c1e570), one entry per
// <name>.<TYPE>.gguf with its architecture read from the file.
#pragma once

#include <QDir>
#include <QString>
#include <algorithm>
#include <string>
#include <vector>

#include "moelab/gguf/gguf.h"
#include "moelab/kernels/kernels.h"
#include "moelab/model/card.h"
#include "test_support.h"

namespace moelab::test {

struct FixtureModel {
  QString base;      // path without ".gguf"
  QString name;      // "mixtral-moe.F32"
  QString type;      // "F32"
  std::string arch;  // general.architecture
  /// The first weight type in the file that moelab has no kernels for ("MXFP4"), or empty.
  std::string missing_type;
  bool is_float() const { return type == "F32" || type == "F16"; }
  bool arch_supported() const {
    const auto& s = supported_architectures();
    return std::find(s.begin(), s.end(), arch) != s.end();
  }
  bool supported() const { return arch_supported() && missing_type.empty(); }
  /// Why the file is skipped: "architecture X not supported yet" / "weight type T not supported
  /// yet" (empty when it runs).
  std::string skip_reason() const {
    if (!arch_supported()) return "architecture " + arch + " not supported yet";
    if (!missing_type.empty()) return "weight type " + missing_type + " not supported yet";
    return {};
  }
};

// Every fixture model, folder by folder, in name order.
inline std::vector<FixtureModel> fixture_models() {
  std::vector<FixtureModel> out;
  for (const char* dir : {"fixtures/models", "fixtures/models-0c1e570"}) {
    QDir models(shared_dir() + "/" + dir);
    for (const QString& d : models.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
      QDir sub(models.filePath(d));
      for (const QString& f : sub.entryList({"*.gguf"}, QDir::Files, QDir::Name)) {
        FixtureModel fx;
        fx.base = sub.filePath(f.left(f.size() - 5));
        fx.name = f.left(f.size() - 5);
        fx.type = fx.name.section('.', -1);
        const auto file = gguf::File::open((fx.base + ".gguf").toStdString());
        fx.arch = file->get_string("general.architecture");
        for (const auto& t : file->tensors())
          if (!kernels::supports(static_cast<gguf::TensorType>(t.type))) {
            fx.missing_type = gguf::type_name(t.type);
            break;
          }
        out.push_back(fx);
      }
    }
  }
  return out;
}

// The fixture models moelab runs (architecture and every weight type supported).
inline std::vector<FixtureModel> runnable_fixture_models() {
  std::vector<FixtureModel> out;
  for (auto& f : fixture_models())
    if (f.supported()) out.push_back(f);
  return out;
}

}  // namespace moelab::test
