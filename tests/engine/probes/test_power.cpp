// PowerMeter and EnergySampler against a fake powercap sysfs tree (wrap-around) and a fake NVML
// library built next to this test.
#include <dlfcn.h>

#include <QtTest>
#include <cmath>
#include <fstream>
#include <thread>

#include "moelab/telemetry/power.h"
#include "test_support.h"

using namespace moelab;

namespace {
void write(const QString& path, const std::string& text) {
  QDir().mkpath(QFileInfo(path).path());
  std::ofstream(path.toStdString()) << text;
}
using SetFn = void (*)(unsigned long long, unsigned, int, int);
}  // namespace

class TestPower : public QObject {
  Q_OBJECT
 private slots:
  void rapl_reads_and_wraps() {
    const QString root = test::temp_dir("power-rapl");
    write(root + "/intel-rapl:0/name", "package-0\n");
    write(root + "/intel-rapl:0/max_energy_range_uj", "262143328850\n");
    write(root + "/intel-rapl:0/energy_uj", "262143000000\n");
    // A sub-zone (core) is part of package 0 and must not be added again.
    write(root + "/intel-rapl:0:0/max_energy_range_uj", "262143328850\n");
    write(root + "/intel-rapl:0:0/energy_uj", "5000000\n");
    write(root + "/intel-rapl:1/max_energy_range_uj", "1000000\n");
    write(root + "/intel-rapl:1/energy_uj", "100\n");
    auto m = open_rapl_meter(root.toStdString());
    QVERIFY2(m->available(), m->unavailable_reason().c_str());
    QCOMPARE(m->name(), std::string("rapl"));
    QCOMPARE(*m->energy_j(), 0.0);
    QVERIFY(!m->power_w());
    QVERIFY(m->resolution().find("1 uJ") != std::string::npos);
    QVERIFY(m->resolution().find("2 package zone(s)") != std::string::npos);
    // Package 0 wraps: 262143000000 -> 500000 is (328850 + 500000) uJ; package 1 adds 400 uJ.
    write(root + "/intel-rapl:0/energy_uj", "500000\n");
    write(root + "/intel-rapl:0:0/energy_uj", "999999999\n");
    write(root + "/intel-rapl:1/energy_uj", "500\n");
    QCOMPARE(*m->energy_j(), (328850.0 + 500000.0 + 400.0) * 1e-6);
    write(root + "/intel-rapl:0/energy_uj", "1500000\n");
    QCOMPARE(*m->energy_j(), (328850.0 + 1500000.0 + 400.0) * 1e-6);
  }

  void rapl_unavailable_says_why() {
    const QString root = test::temp_dir("power-rapl-none");
    auto m = open_rapl_meter((root + "/absent").toStdString());
    QVERIFY(!m->available());
    QVERIFY(m->unavailable_reason().find("no powercap sysfs") != std::string::npos);
    QVERIFY(!m->energy_j());
    write(root + "/intel-rapl:0/energy_uj", "12\n");  // no max_energy_range_uj
    auto m2 = open_rapl_meter(root.toStdString());
    QVERIFY(!m2->available());
    QVERIFY(m2->unavailable_reason().find("max_energy_range_uj") != std::string::npos);
    auto best = open_power_meter(false, (root + "/absent").toStdString());
    QCOMPARE(best->name(), std::string("unavailable"));
    QVERIFY(best->unavailable_reason().rfind("power unavailable, because RAPL", 0) == 0);
    QVERIFY(!best->energy_j() && !best->power_w());
  }

  void nvml_fake_library() {
    void* h = dlopen(MOELAB_FAKE_NVML, RTLD_NOW);
    QVERIFY(h);
    auto set = reinterpret_cast<SetFn>(dlsym(h, "fake_nvml_set"));
    auto inits = reinterpret_cast<int (*)()>(dlsym(h, "fake_nvml_inits"));
    QVERIFY(set && inits);
    set(5000, 71250, 0, 1);
    {
      auto m = open_nvml_meter(MOELAB_FAKE_NVML, 0);
      QVERIFY2(m->available(), m->unavailable_reason().c_str());
      QCOMPARE(inits(), 1);
      QCOMPARE(*m->energy_j(), 0.0);
      QCOMPARE(*m->power_w(), 71.25);
      set(7500, 80000, 0, 1);
      QCOMPARE(*m->energy_j(), 2.5);
      QVERIFY(m->resolution().find("1 mJ") != std::string::npos);
      auto bad = open_nvml_meter(MOELAB_FAKE_NVML, 3);
      QVERIFY(!bad->available());
      QVERIFY2(bad->unavailable_reason().find("Invalid Argument") != std::string::npos,
               bad->unavailable_reason().c_str());
    }
    QCOMPARE(inits(), 0);  // nvmlShutdown called for each successful init
    set(0, 0, 9, 1);
    auto off = open_nvml_meter(MOELAB_FAKE_NVML, 0);
    QVERIFY(!off->available());
    QVERIFY(off->unavailable_reason().find("Driver Not Loaded") != std::string::npos);
    auto none = open_nvml_meter("libmoelab-no-such-nvml.so.1", 0);
    QVERIFY(!none->available());
    QVERIFY(none->unavailable_reason().find("cannot load") != std::string::npos);
    dlclose(h);
  }

  void sampler_counter_phases_and_tokens() {
    void* h = dlopen(MOELAB_FAKE_NVML, RTLD_NOW);
    auto set = reinterpret_cast<SetFn>(dlsym(h, "fake_nvml_set"));
    set(1000, 50000, 0, 1);
    auto m = open_nvml_meter(MOELAB_FAKE_NVML, 0);
    EnergySampler s(*m, std::chrono::milliseconds(1));
    s.begin_phase("prefill");
    set(4000, 50000, 0, 1);  // prefill: 3 J
    s.mark_token();
    s.begin_phase("decode");
    set(4500, 50000, 0, 1);
    s.mark_token();  // 0.5 J
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    set(5250, 50000, 0, 1);
    s.mark_token();  // 0.75 J
    const EnergyReport r = s.finish();
    QVERIFY(r.available);
    QCOMPARE(r.meter, std::string("nvml"));
    QCOMPARE(static_cast<int>(r.phases.size()), 2);
    QCOMPARE(r.phases[0].phase, std::string("prefill"));
    QCOMPARE(r.phases[0].joules, 3.0);
    QCOMPARE(r.phases[0].tokens, int64_t{1});
    QCOMPARE(r.phases[1].joules, 1.25);
    QCOMPARE(r.phases[1].tokens, int64_t{2});
    QCOMPARE(r.phases[1].joules_per_token(), 0.625);
    QCOMPARE(static_cast<int>(r.token_joules.size()), 3);
    QCOMPARE(r.token_joules[0], 3.0);
    QCOMPARE(r.token_joules[1], 0.5);
    QCOMPARE(r.token_joules[2], 0.75);
    QVERIFY(r.samples >= 6);
    m.reset();
    dlclose(h);
  }

  void sampler_power_only_integrates() {
    void* h = dlopen(MOELAB_FAKE_NVML, RTLD_NOW);
    auto set = reinterpret_cast<SetFn>(dlsym(h, "fake_nvml_set"));
    set(0, 100000, 0, 0);  // 100 W, no energy counter
    auto m = open_nvml_meter(MOELAB_FAKE_NVML, 0);
    QVERIFY(m->available());
    QVERIFY(!m->energy_j());
    EnergySampler s(*m, std::chrono::milliseconds(2));
    s.begin_phase("decode");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const EnergyReport r = s.finish();
    QVERIFY(r.method.find("trapezoid") != std::string::npos);
    QCOMPARE(static_cast<int>(r.phases.size()), 1);
    // Constant 100 W: energy = 100 W x the time between the phase's first and last samples.
    QVERIFY2(std::fabs(r.phases[0].joules - 100.0 * r.phases[0].seconds) < 100.0 * 0.01,
             qPrintable(QString("J %1 s %2").arg(r.phases[0].joules).arg(r.phases[0].seconds)));
    m.reset();
    dlclose(h);
  }

  void sampler_unavailable_reports_no_number() {
    auto m = unavailable_meter("power unavailable, because test");
    EnergySampler s(*m, std::chrono::milliseconds(1));
    s.begin_phase("prefill");
    s.mark_token();
    const EnergyReport r = s.finish();
    QVERIFY(!r.available);
    QCOMPARE(r.reason, std::string("power unavailable, because test"));
    QVERIFY(std::isnan(r.phases[0].joules));
    QVERIFY(std::isnan(r.token_joules[0]));
  }
};

QTEST_GUILESS_MAIN(TestPower)
#include "test_power.moc"
