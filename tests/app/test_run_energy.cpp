// session::RunEnergy on a fake powercap sysfs tree: prefill/decode phases from the token
// callback, J/token of the decode steps, JSON and stored metrics; without a sensor every value is
// null/absent and the reason is given.
#include <QtTest>
#include <fstream>

#include "moelab/session/energy.h"
#include "test_support.h"

using namespace moelab;

namespace {
void write(const QString& path, const std::string& text) {
  QDir().mkpath(QFileInfo(path).path());
  std::ofstream(path.toStdString()) << text;
}
TokenEvent token(int32_t index) {
  TokenEvent ev;
  ev.id = 5;
  ev.index = index;
  return ev;
}
}  // namespace

class TestRunEnergy : public QObject {
  Q_OBJECT
 private slots:
  void measured_on_fake_rapl() {
    const QString root = test::temp_dir("run-energy-rapl");
    write(root + "/intel-rapl:0/max_energy_range_uj", "262143328850\n");
    write(root + "/intel-rapl:0/energy_uj", "1000000\n");
    session::RunEnergy e(open_rapl_meter(root.toStdString()), std::chrono::milliseconds(1));
    QVERIFY2(e.available(), e.unavailable_reason().c_str());
    int inner = 0;
    auto cb = e.wrap([&inner](const TokenEvent&) { return ++inner > 0; });
    write(root + "/intel-rapl:0/energy_uj", "3000000\n");  // prefill: 2 J
    QVERIFY(cb(token(0)));
    write(root + "/intel-rapl:0/energy_uj", "3500000\n");  // decode step 1: 0.5 J
    QVERIFY(cb(token(1)));
    write(root + "/intel-rapl:0/energy_uj", "4200000\n");  // decode step 2: 0.7 J
    QVERIFY(cb(token(2)));
    QCOMPARE(inner, 3);
    const auto& r = e.finish();
    QCOMPARE(r.phases.size(), size_t(2));
    QCOMPARE(r.phases[0].phase, std::string("prefill"));
    QCOMPARE(r.phases[1].tokens, int64_t(2));
    QVERIFY(std::abs(*e.energy_j() - 3.2) < 1e-12);
    QVERIFY(std::abs(*e.j_per_token() - 0.6) < 1e-12);
    const auto j = e.json();
    QVERIFY(std::abs(j["energy_j"].get<double>() - 3.2) < 1e-12);
    QVERIFY(std::abs(j["j_per_token"].get<double>() - 0.6) < 1e-12);
    QCOMPARE(j["energy_meter"].get<std::string>(), std::string("rapl"));
    QVERIFY(!j.contains("energy_unavailable"));
  }

  void no_sensor_no_number() {
    const QString root = test::temp_dir("run-energy-none");
    session::RunEnergy e(open_power_meter(false, (root + "/absent").toStdString()));
    QVERIFY(!e.available());
    auto cb = e.wrap();
    QVERIFY(cb(token(0)));
    QVERIFY(cb(token(1)));
    const auto j = e.json();
    QVERIFY(j["energy_j"].is_null());
    QVERIFY(j["j_per_token"].is_null());
    QVERIFY(!e.energy_j() && !e.j_per_token());
    const std::string why = j["energy_unavailable"].get<std::string>();
    QVERIFY2(why.rfind("power unavailable, because RAPL", 0) == 0, why.c_str());
  }
};

QTEST_GUILESS_MAIN(TestRunEnergy)
#include "test_run_energy.moc"
