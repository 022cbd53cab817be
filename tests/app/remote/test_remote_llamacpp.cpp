// Remote runs and bench-serve against llama.cpp's llama-server (issue 21, optional: label
// llamacpp). llama-server is built by bench/llamacpp/build.sh from the llama.cpp tree vendored in
// llama-cpp-python 0.3.36's source distribution (nothing committed); the CMake variable
// MOELAB_LLAMA_SERVER names it. Without it the test is skipped, saying where it looked.
// Checked: run --remote streams the fixture MoE's completion and stores it; llama-server reports
// no routed experts and no token ids, which are stored and printed as unavailable (never
// invented); bench-serve measures every request.
#include <QFileInfo>
#include <QProcess>
#include <QTemporaryDir>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli_run.h"
#include "moelab/storage/store.h"
#include "test_support.h"

using moelab::test::cli_run;
using json = nlohmann::json;

namespace {
const QString kMoe = QStringLiteral("fixtures/models/mixtral-moe/mixtral-moe.F32.gguf");

// A port that was free a moment ago (llama-server takes a port number, not 0).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}
}  // namespace

class TestRemoteLlamacpp : public QObject {
  Q_OBJECT
 private slots:
  void llama_server() {
    const QString exe = QStringLiteral(MOELAB_LLAMA_SERVER);
    if (!QFileInfo(exe).isExecutable())
      QSKIP(qPrintable("skipped: llama-server not found at " + exe));
    MOELAB_REQUIRE_SHARED(kMoe);
    QTemporaryDir dir;
    const int port = free_port();
    QVERIFY(port > 0);
    QProcess srv;
    srv.setProcessChannelMode(QProcess::MergedChannels);
    srv.start(exe, {"-m", QString::fromStdString(moelab::test::shared_path(kMoe)), "--host",
                    "127.0.0.1", "--port", QString::number(port), "-c", "512", "-t", "1"});
    QVERIFY(srv.waitForStarted(10000));
    const std::string url = "http://127.0.0.1:" + std::to_string(port);
    httplib::Client c(url);
    bool ready = false;
    while (!ready && srv.state() == QProcess::Running) {  // /health: 503 while loading
      auto r = c.Get("/health");
      ready = r && r->status == 200;
      if (!ready) srv.waitForFinished(100);
    }
    QVERIFY2(ready, srv.readAll().constData());

    const std::string db = dir.filePath("l.db").toStdString();
    const auto r = cli_run({"run", "--remote", url, "--remote-model", "fixture", "-p",
                            "Once upon a time", "-n", "8", "--ignore-eos", "--seed", "1", "--json",
                            "--db", db, "--session", "llama"});
    QVERIFY2(r.code == 0, r.err.c_str());
    const json j = json::parse(r.out);
    QVERIFY(!j["text"].get<std::string>().empty());
    QVERIFY(j["routed_experts"].is_null());
    QCOMPARE(j["generated_tokens"], json(8));  // usage.completion_tokens, not the chunk count
    QCOMPARE(j["routed_experts_unavailable"], json("not available from this engine"));
    moelab::storage::Store store(db);
    const auto run = store.run(j["run_id"].get<int64_t>());
    QCOMPARE(moelab::storage::status_name(run->status), "complete");
    QVERIFY(store.routing(run->id).empty());
    QVERIFY(json::parse(run->config_json)["engine"] == "remote");

    const std::string prompts = dir.filePath("p.txt").toStdString();
    std::ofstream(prompts) << "Once upon a time\nThe cat\n";
    const auto b = cli_run({"bench-serve", url, "--model", "fixture", "-n", "4", "-c", "2",
                            "--prompts", prompts, "--max-tokens", "8", "--json"});
    QVERIFY2(b.code == 0, b.err.c_str());
    const json bj = json::parse(b.out);
    QCOMPARE(bj["failed"], json(0));
    QCOMPARE(bj["ttft_ms"]["n"], json(4));
    srv.terminate();
    srv.waitForFinished(20000);
  }
};

QTEST_GUILESS_MAIN(TestRemoteLlamacpp)
#include "test_remote_llamacpp.moc"
