// Fake NVML for test_power: the entry points moelab's NVML meter dlopens, with values the test
// sets through fake_nvml_set (found with dlsym on the same library handle).
#include <atomic>
#include <cstring>

namespace {
// Atomics: the test thread sets them while the energy sampler's thread reads them (as the real
// NVML, whose entry points are thread-safe).
std::atomic<unsigned long long> g_energy_mj{0};
std::atomic<unsigned> g_power_mw{0};
std::atomic<int> g_init_rc{0};
std::atomic<bool> g_has_energy{true};
std::atomic<int> g_inits{0};
}  // namespace

extern "C" {
void fake_nvml_set(unsigned long long energy_mj, unsigned power_mw, int init_rc, int has_energy) {
  g_energy_mj = energy_mj;
  g_power_mw = power_mw;
  g_init_rc = init_rc;
  g_has_energy = has_energy != 0;
}
int fake_nvml_inits() {
  return g_inits;
}
int nvmlInit_v2() {
  ++g_inits;
  return g_init_rc;
}
int nvmlShutdown() {
  --g_inits;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** dev) {
  if (index != 0) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *dev = reinterpret_cast<void*>(&g_energy_mj);
  return 0;
}
int nvmlDeviceGetPowerUsage(void*, unsigned* mw) {
  *mw = g_power_mw;
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void*, unsigned long long* mj) {
  if (!g_has_energy) return 3;  // NVML_ERROR_NOT_SUPPORTED
  *mj = g_energy_mj;
  return 0;
}
const char* nvmlErrorString(int rc) {
  switch (rc) {
    case 2:
      return "Invalid Argument";
    case 3:
      return "Not Supported";
    case 9:
      return "Driver Not Loaded";
    default:
      return "Unknown Error";
  }
}
}
