#include <QtTest>
class TestKernelsFixtures : public QObject { Q_OBJECT };
QTEST_APPLESS_MAIN(TestKernelsFixtures)
#include "test_kernels_fixtures.moc"
