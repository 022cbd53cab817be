// moelab_report without moelab_views (no Vulkan headers, glm or glslc at configure time): the
// figures cannot be drawn with the views' renderer, so every report entry point says why.
#include "moelab/core/error.h"
#include "moelab/report/report.h"

namespace moelab::report {

namespace {
[[noreturn]] void unavailable() {
  throw Error(ErrorKind::Internal,
              "this build has no report support: moelab_views (Vulkan headers, glm, glslc, "
              "Qt6 Gui) was not found when it was configured");
}
}  // namespace

MachineInfo probe_machine() {
  unavailable();
}
nlohmann::json build_json(const storage::Store&, const Selection&, const Options&) {
  unavailable();
}
Written write_report(const storage::Store&, const Selection&, const std::string&, const Options&) {
  unavailable();
}

}  // namespace moelab::report
