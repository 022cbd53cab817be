// PowerMeter implementations: NVML (dlopen), RAPL powercap sysfs, unavailable.
#include <dlfcn.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "moelab/telemetry/power.h"

namespace moelab {

namespace {

class UnavailableMeter final : public PowerMeter {
 public:
  explicit UnavailableMeter(std::string why) : why_(std::move(why)) {}
  std::string name() const override { return "unavailable"; }
  bool available() const override { return false; }
  std::string unavailable_reason() const override { return why_; }
  std::optional<double> energy_j() override { return std::nullopt; }
  std::optional<double> power_w() override { return std::nullopt; }
  std::string resolution() const override { return "none (no sensor)"; }

 private:
  std::string why_;
};

// --- NVML -------------------------------------------------------------------------------------
// The few NVML entry points used (nvml.h, NVML API reference); nvmlReturn_t 0 = NVML_SUCCESS.
using NvmlDevice = void*;
using FnInit = int (*)();
using FnShutdown = int (*)();
using FnHandle = int (*)(unsigned, NvmlDevice*);
using FnPower = int (*)(NvmlDevice, unsigned*);
using FnEnergy = int (*)(NvmlDevice, unsigned long long*);
using FnError = const char* (*)(int);

class NvmlMeter final : public PowerMeter {
 public:
  NvmlMeter(const std::string& lib, unsigned device) {
    handle_ = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      const char* e = dlerror();
      why_ = "NVML: cannot load " + lib + " (" + (e ? e : "unknown error") +
             "); no NVIDIA driver installed";
      return;
    }
    auto sym = [&](const char* a, const char* b = nullptr) {
      void* p = dlsym(handle_, a);
      if (!p && b) p = dlsym(handle_, b);
      return p;
    };
    auto init = reinterpret_cast<FnInit>(sym("nvmlInit_v2", "nvmlInit"));
    shutdown_ = reinterpret_cast<FnShutdown>(sym("nvmlShutdown"));
    auto get = reinterpret_cast<FnHandle>(
        sym("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"));
    power_ = reinterpret_cast<FnPower>(sym("nvmlDeviceGetPowerUsage"));
    energy_ = reinterpret_cast<FnEnergy>(sym("nvmlDeviceGetTotalEnergyConsumption"));
    error_ = reinterpret_cast<FnError>(sym("nvmlErrorString"));
    if (!init || !get || (!power_ && !energy_)) {
      why_ = "NVML: " + lib + " lacks nvmlInit / nvmlDeviceGetHandleByIndex / power queries";
      return;
    }
    int rc = init();
    if (rc != 0) {
      why_ = "NVML: nvmlInit failed: " + err(rc);
      return;
    }
    inited_ = true;
    rc = get(device, &dev_);
    if (rc != 0) {
      why_ = "NVML: no GPU " + std::to_string(device) + ": " + err(rc);
      return;
    }
    unsigned long long mj = 0;
    if (energy_ && energy_(dev_, &mj) == 0) {
      e0_mj_ = mj;
    } else {
      energy_ = nullptr;  // pre-Volta GPUs: no energy counter, power only
    }
    unsigned mw = 0;
    if (power_ && power_(dev_, &mw) != 0) power_ = nullptr;
    if (!energy_ && !power_) {
      why_ = "NVML: GPU " + std::to_string(device) + " reports neither energy nor power";
      return;
    }
    ok_ = true;
  }
  ~NvmlMeter() override {
    if (inited_ && shutdown_) shutdown_();
    if (handle_) dlclose(handle_);
  }
  std::string name() const override { return "nvml"; }
  bool available() const override { return ok_; }
  std::string unavailable_reason() const override { return ok_ ? "" : why_; }
  std::optional<double> energy_j() override {
    unsigned long long mj = 0;
    if (!ok_ || !energy_ || energy_(dev_, &mj) != 0) return std::nullopt;
    return static_cast<double>(mj - e0_mj_) / 1000.0;
  }
  std::optional<double> power_w() override {
    unsigned mw = 0;
    if (!ok_ || !power_ || power_(dev_, &mw) != 0) return std::nullopt;
    return mw / 1000.0;
  }
  std::string resolution() const override {
    return energy_ ? "NVML total-energy counter, 1 mJ units; power 1 mW units; driver refresh "
                     "a few ms to ~100 ms depending on the GPU"
                   : "NVML power only, 1 mW units (no energy counter on this GPU; energy is "
                     "integrated from samples)";
  }

 private:
  std::string err(int rc) const {
    const char* s = error_ ? error_(rc) : nullptr;
    return s ? std::string(s) + " (" + std::to_string(rc) + ")" : "error " + std::to_string(rc);
  }
  void* handle_ = nullptr;
  NvmlDevice dev_ = nullptr;
  FnShutdown shutdown_ = nullptr;
  FnPower power_ = nullptr;
  FnEnergy energy_ = nullptr;
  FnError error_ = nullptr;
  bool inited_ = false, ok_ = false;
  unsigned long long e0_mj_ = 0;
  std::string why_;
};

// --- RAPL -------------------------------------------------------------------------------------
bool read_u64(const std::filesystem::path& p, uint64_t& v, std::string& why) {
  std::ifstream in(p);
  if (!in) {
    const int e = errno;
    why = "cannot read " + p.string() + ": " + std::strerror(e) +
          (e == EACCES ? " (energy_uj is root-only since Linux 5.10, CVE-2020-8694)" : "");
    return false;
  }
  if (!(in >> v)) {
    why = p.string() + " does not hold a number";
    return false;
  }
  return true;
}

class RaplMeter final : public PowerMeter {
 public:
  explicit RaplMeter(const std::string& root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(root, ec)) {
      why_ = "RAPL: no powercap sysfs at " + root;
      return;
    }
    std::vector<fs::path> dirs;
    for (const auto& d : fs::directory_iterator(root, ec)) {
      const std::string n = d.path().filename().string();
      // Top-level zones only ("intel-rapl:0", not "intel-rapl:0:0"), and not the
      // "intel-rapl" control type itself.
      if (std::count(n.begin(), n.end(), ':') != 1) continue;
      if (fs::exists(d.path() / "energy_uj", ec)) dirs.push_back(d.path());
    }
    std::sort(dirs.begin(), dirs.end());
    if (dirs.empty()) {
      why_ = "RAPL: no zone with energy_uj under " + root;
      return;
    }
    for (const auto& d : dirs) {
      Zone z;
      z.path = d / "energy_uj";
      std::string why;
      if (!read_u64(d / "max_energy_range_uj", z.max_uj, why) || !read_u64(z.path, z.last, why)) {
        why_ = "RAPL: " + why;
        return;
      }
      zones_.push_back(z);
    }
    ok_ = true;
  }
  std::string name() const override { return "rapl"; }
  bool available() const override { return ok_; }
  std::string unavailable_reason() const override { return ok_ ? "" : why_; }
  std::optional<double> energy_j() override {
    if (!ok_) return std::nullopt;
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& z : zones_) {
      uint64_t v = 0;
      std::string why;
      if (!read_u64(z.path, v, why)) return std::nullopt;
      // Counter range [0, max_energy_range_uj]: a smaller reading means one wrap.
      z.total += v >= z.last ? v - z.last : (z.max_uj - z.last) + v;
      z.last = v;
    }
    uint64_t sum = 0;
    for (const auto& z : zones_) sum += z.total;
    return static_cast<double>(sum) * 1e-6;
  }
  std::optional<double> power_w() override { return std::nullopt; }
  std::string resolution() const override {
    return "RAPL energy counter via powercap sysfs, 1 uJ units (hardware energy unit typically "
           "15.3-61 uJ, updated about every 1 ms); " +
           std::to_string(zones_.size()) + " package zone(s) summed";
  }

 private:
  struct Zone {
    std::filesystem::path path;
    uint64_t max_uj = 0, last = 0, total = 0;
  };
  std::vector<Zone> zones_;
  bool ok_ = false;
  std::string why_;
  std::mutex mutex_;
};

}  // namespace

std::unique_ptr<PowerMeter> open_nvml_meter(const std::string& library, unsigned device) {
  return std::make_unique<NvmlMeter>(library, device);
}

std::unique_ptr<PowerMeter> open_rapl_meter(const std::string& sysfs_root) {
  return std::make_unique<RaplMeter>(sysfs_root);
}

std::unique_ptr<PowerMeter> unavailable_meter(std::string reason) {
  return std::make_unique<UnavailableMeter>(std::move(reason));
}

std::unique_ptr<PowerMeter> open_power_meter(bool gpu, const std::string& sysfs_root) {
  std::unique_ptr<PowerMeter> m = gpu ? open_nvml_meter() : open_rapl_meter(sysfs_root);
  if (m->available()) return m;
  return unavailable_meter("power unavailable, because " + m->unavailable_reason());
}

}  // namespace moelab
