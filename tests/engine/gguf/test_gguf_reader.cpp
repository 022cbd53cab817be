// GGUF reader: values round-trip through the writer, and every kind of malformed header is
// rejected with a message that names the problem and the place - never a crash, never an
// allocation sized by a number from the file. Files are built in memory (no shared data).
#include <sys/resource.h>
#include <QtTest>
#include <chrono>
#include <cstring>

#include "moelab/gguf/gguf.h"
#include "moelab/gguf/writer.h"
#include "test_support.h"

using namespace moelab;
using namespace moelab::gguf;

namespace {

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A small valid file: a few metadata types and two F32 tensors.
std::vector<uint8_t> sample_file() {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("some.flag", true);
  w.set_array_string("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
  const float scores[] = {0.f, 0.f, 0.f, -1.5f};
  w.set_array_f32("tokenizer.ggml.scores", scores);
  w.add_tensor("a.weight", TensorType::F32, {4, 2}, f32_bytes({0, 1, 2, 3, 4, 5, 6, 7}));
  w.add_tensor("b.weight", TensorType::F32, {3}, f32_bytes({9, 8, 7}));
  return w.to_bytes();
}

// Parses `bytes` and returns the error message ("" if it parsed).
std::string parse_error(const std::vector<uint8_t>& bytes, double* ms = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    File::from_memory(bytes.data(), bytes.size(), "x.gguf");
  } catch (const Error& e) {
    msg = e.what();
    if (e.kind() != ErrorKind::BadInput) msg = "WRONG KIND: " + msg;
  }
  if (ms)
    *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return msg;
}

void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  std::memcpy(b.data() + at, &v, 8);
}
void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  std::memcpy(b.data() + at, &v, 4);
}

// Finds the offset of a byte string in the buffer.
size_t find(const std::vector<uint8_t>& b, std::string_view s) {
  auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
  return it == b.end() ? SIZE_MAX : static_cast<size_t>(it - b.begin());
}

#define EXPECT_REJECT(bytes, needle)                           \
  do {                                                         \
    const std::string m_ = parse_error(bytes);                 \
    QVERIFY2(!m_.empty(), "accepted a bad file");              \
    QVERIFY2(m_.find(needle) != std::string::npos,             \
             (m_ + "  [expected: " + (needle) + "]").c_str()); \
  } while (0)

}  // namespace

class TestGgufReader : public QObject {
  Q_OBJECT
 private slots:
  void roundTripValues() {
    const auto bytes = sample_file();
    auto f = File::from_memory(bytes.data(), bytes.size());
    QCOMPARE(f->version(), 3u);
    QCOMPARE(f->metadata().size(), size_t(6));
    QCOMPARE(f->get_string("general.architecture"), std::string("llama"));
    QCOMPARE(f->get_u64("llama.block_count", 0), uint64_t(2));
    QCOMPARE(f->get_f64("llama.rope.freq_base", 0), 10000.0);
    QCOMPARE(f->get_bool("some.flag", false), true);
    const Value* toks = f->find("tokenizer.ggml.tokens");
    QVERIFY(toks);
    QCOMPARE(toks->size(), uint64_t(4));
    QCOMPARE(std::string(toks->strings()[3]), std::string("a"));
    QCOMPARE(f->find("tokenizer.ggml.scores")->number_at(3), -1.5);
    QCOMPARE(f->tensors().size(), size_t(2));
    const TensorInfo* a = f->find_tensor("a.weight");
    QVERIFY(a);
    QCOMPARE(a->ne[0], int64_t(4));
    QCOMPARE(a->ne[1], int64_t(2));
    QCOMPARE(a->nbytes, uint64_t(32));
    QCOMPARE(a->data - f->base(), static_cast<ptrdiff_t>(f->data_offset()));
    float v[8];
    std::memcpy(v, a->data, 32);
    for (int i = 0; i < 8; ++i) QCOMPARE(v[i], float(i));
    const TensorInfo* b = f->find_tensor("b.weight");
    QCOMPARE(b->offset, uint64_t(32));  // aligned to 32 after a's 32 bytes
    float w[3];
    std::memcpy(w, b->data, 12);
    QCOMPARE(w[2], 7.f);
    QCOMPARE(f->data_offset() % 32, uint64_t(0));
  }

  void typedGettersRefuseWrongTypes() {
    const auto bytes = sample_file();
    auto f = File::from_memory(bytes.data(), bytes.size());
    QVERIFY_THROWS_EXCEPTION(Error, f->get_u64("general.architecture", 0));
    QVERIFY_THROWS_EXCEPTION(Error, f->get_string("llama.block_count"));
    try {
      f->get_bool("llama.block_count", false);
      QFAIL("no error");
    } catch (const Error& e) {
      QVERIFY(std::string(e.what()).find("llama.block_count") != std::string::npos);
    }
  }

  void customAlignmentMovesDataStart() {
    Writer w;
    w.set_alignment(64);
    w.add_tensor("t", TensorType::F32, {2}, f32_bytes({1, 2}));
    const auto bytes = w.to_bytes();
    auto f = File::from_memory(bytes.data(), bytes.size());
    QCOMPARE(f->alignment(), 64u);
    QCOMPARE(f->data_offset() % 64, uint64_t(0));
  }

  // Every prefix of a valid file is rejected cleanly (truncated downloads of every length).
  void everyTruncationRejected() {
    const auto bytes = sample_file();
    for (size_t n = 0; n < bytes.size(); ++n) {
      std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
      const std::string m = parse_error(cut);
      QVERIFY2(!m.empty(), ("accepted a file truncated to " + std::to_string(n)).c_str());
      QVERIFY2(m.rfind("WRONG KIND", 0) != 0, m.c_str());
    }
  }

  // Flipping any single byte of the header never crashes (it may or may not be rejected).
  void singleByteCorruptionNeverCrashes() {
    const auto bytes = sample_file();
    auto f = File::from_memory(bytes.data(), bytes.size());
    for (size_t i = 0; i < f->data_offset(); ++i) {
      for (uint8_t x : {uint8_t(0xff), uint8_t(0x00), uint8_t(0x80), uint8_t(0x7f)}) {
        auto m = bytes;
        m[i] = x;
        parse_error(m);
      }
    }
  }

  void badMagicIsExplained() {
    auto b = sample_file();
    std::string html = "<!DOCTYPE html><html><head><title>x</title></head></html>";
    EXPECT_REJECT(std::vector<uint8_t>(html.begin(), html.end()), "HTML page");
    std::string lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n";
    EXPECT_REJECT(std::vector<uint8_t>(lfs.begin(), lfs.end()), "Git LFS pointer");
    auto swapped = b;
    std::memcpy(swapped.data(), "FUGG", 4);
    EXPECT_REJECT(swapped, "big-endian");
    auto ggjt = b;
    std::memcpy(ggjt.data(), "tjgg", 4);
    EXPECT_REJECT(ggjt, "legacy GGML");
    std::vector<uint8_t> zip = {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0};
    EXPECT_REJECT(zip, "ZIP archive");
    EXPECT_REJECT(std::vector<uint8_t>{}, "empty");
    std::vector<uint8_t> junk = {1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_REJECT(junk, "01 02 03 04");
  }

  void versions() {
    auto b = sample_file();
    put_u32(b, 4, 1);
    EXPECT_REJECT(b, "version 1");
    put_u32(b, 4, 4);
    EXPECT_REJECT(b, "newer than this moelab");
    put_u32(b, 4, 0x03000000);
    EXPECT_REJECT(b, "byte-swapped");
    put_u32(b, 4, 2);  // v2 has the same layout as v3 for little-endian files
    QCOMPARE(parse_error(b), std::string());
  }

  void countsThatCannotFit() {
    auto b = sample_file();
    put_u64(b, 8, uint64_t(1) << 62);  // tensor_count
    EXPECT_REJECT(b, "tensors, which cannot fit");
    b = sample_file();
    put_u64(b, 16, UINT64_MAX);  // kv_count
    EXPECT_REJECT(b, "metadata entries, which cannot fit");
  }

  void hugeStringAndArrayLengths() {
    auto b = sample_file();
    put_u64(b, 24, (uint64_t(1) << 48) - 1);  // first key length
    EXPECT_REJECT(b, "only");
    EXPECT_REJECT(b, "corrupt or hostile");
    // Array count of tokenizer.ggml.tokens.
    b = sample_file();
    size_t at = find(b, "tokenizer.ggml.tokens") + std::strlen("tokenizer.ggml.tokens") + 4 + 4;
    put_u64(b, at, UINT64_MAX / 2);
    EXPECT_REJECT(b, "cannot fit");
    EXPECT_REJECT(b, "tokenizer.ggml.tokens");
    // Array of f32 whose byte size overflows 64 bits.
    b = sample_file();
    at = find(b, "tokenizer.ggml.scores") + std::strlen("tokenizer.ggml.scores") + 4 + 4;
    put_u64(b, at, UINT64_MAX / 2);
    EXPECT_REJECT(b, "cannot fit");
  }

  void unknownValueType() {
    auto b = sample_file();
    const size_t at = find(b, "llama.block_count") + std::strlen("llama.block_count");
    put_u32(b, at, 13);
    EXPECT_REJECT(b, "unknown metadata value type 13");
    EXPECT_REJECT(b, "llama.block_count");
  }

  void invalidBool() {
    auto b = sample_file();
    const size_t at = find(b, "some.flag") + std::strlen("some.flag") + 4;
    b[at] = 7;
    EXPECT_REJECT(b, "BOOL value must be 0 or 1");
  }

  void duplicateKey() {
    auto b = sample_file();
    // Rename "some.flag" to "llama.rope.freq_base"-length-compatible duplicate: reuse an equal-
    // length key by overwriting "some.flag" with the 9-byte prefix of nothing else: build anew.
    Writer w;
    w.set_u32("a.key", 1);
    w.set_u32("b.key", 2);
    auto d = w.to_bytes();
    d[find(d, "b.key")] = 'a';
    EXPECT_REJECT(d, "duplicate metadata key");
    EXPECT_REJECT(d, "a.key");
  }

  void alignmentRules() {
    Writer w;
    w.set_u32("general.alignment", 24);
    auto b = w.to_bytes();
    EXPECT_REJECT(b, "power of two");
    Writer w2;
    w2.set_u64("general.alignment", 32);
    EXPECT_REJECT(w2.to_bytes(), "must be stored as UINT32");
  }

  void tensorDirectoryRules() {
    auto make = [](auto mutate) {
      Writer w;
      w.add_tensor("t.weight", TensorType::F32, {4, 2}, f32_bytes({0, 1, 2, 3, 4, 5, 6, 7}));
      auto b = w.to_bytes();
      const size_t name = find(b, "t.weight");
      mutate(b, name + 8);  // position of n_dims
      return b;
    };
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p, 0); }), "has 0 dimensions");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p, 5); }), "has 5 dimensions");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u64(b, p + 4 + 8, 0); }), "dimension 1 is 0");
    EXPECT_REJECT(make([](auto& b, size_t p) {
                    put_u64(b, p + 4, uint64_t(1) << 40);
                    put_u64(b, p + 4 + 8, uint64_t(1) << 40);
                  }),
                  "overflows 64 bits");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p + 4 + 16, 200); }), "ggml type 200");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p + 4 + 16, 4); }), "Q4_2");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p + 4 + 16, 33); }), "Q4_0_8_8");
    // Q8_0 with rows of 4 elements: not a multiple of the block size 32.
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p + 4 + 16, 8); }),
                  "not a multiple of the Q8_0 block size 32");
    // MXFP4 (type 39) likewise: the error names the tensor and the type's block.
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p + 4 + 16, 39); }),
                  "not a multiple of the MXFP4 block size 32");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u32(b, p + 4 + 16, 39); }), "t.weight");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u64(b, p + 4 + 16 + 4, 8); }),
                  "not a multiple of the alignment");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u64(b, p + 4 + 16 + 4, 1ull << 20); }),
                  "past the end");
    EXPECT_REJECT(make([](auto& b, size_t p) { put_u64(b, p + 4 + 16 + 4, UINT64_MAX - 31); }),
                  "overflows");
    // Name longer than the GGUF limit of 64 bytes.
    Writer w;
    w.add_tensor(std::string(65, 'n'), TensorType::F32, {1}, f32_bytes({1}));
    EXPECT_REJECT(w.to_bytes(), "at most 64");
  }

  void overlappingTensors() {
    Writer w;
    w.add_tensor("a", TensorType::F32, {16}, f32_bytes(std::vector<float>(16, 1)));
    w.add_tensor("b", TensorType::F32, {16}, f32_bytes(std::vector<float>(16, 2)));
    auto b = w.to_bytes();
    // b's offset field: after "b" name, n_dims(4), dim(8), type(4).
    const size_t pos = find(b, std::string_view("\x01\0\0\0\0\0\0\0b", 9)) + 9 + 4 + 8 + 4;
    put_u64(b, pos, 32);  // inside a's 64 bytes
    EXPECT_REJECT(b, "overlaps");
  }

  void nestedArraysAreDepthLimited() {
    // 100 levels of nested arrays, built by hand; parsed without recursion blow-up.
    std::vector<uint8_t> b;
    // resize + memcpy rather than insert: GCC 12 warns falsely (-Wstringop-overflow) on insert.
    auto put = [&](const void* p, size_t n) {
      const size_t at = b.size();
      b.resize(at + n);
      std::memcpy(b.data() + at, p, n);
    };
    auto u32 = [&](uint32_t v) { put(&v, 4); };
    auto u64 = [&](uint64_t v) { put(&v, 8); };
    u32(kMagic);
    u32(3);
    u64(0);
    u64(1);
    u64(4);
    b.insert(b.end(), {'d', 'e', 'e', 'p'});
    u32(9);
    for (int i = 0; i < 100; ++i) {
      u32(9);
      u64(1);
    }
    u32(0);
    u64(0);
    EXPECT_REJECT(b, "nested more than 64");
  }

  // Hostile headers are rejected fast and without large allocations.
  void rejectionIsFastAndSmall() {
    std::vector<std::vector<uint8_t>> bad;
    auto b = sample_file();
    put_u64(b, 8, uint64_t(1) << 62);
    bad.push_back(b);
    b = sample_file();
    put_u64(b, 16, UINT64_MAX);
    bad.push_back(b);
    b = sample_file();
    put_u64(b, 24, UINT64_MAX);
    bad.push_back(b);
    struct rusage before {
    }, after{};
    getrusage(RUSAGE_SELF, &before);
    for (const auto& x : bad) {
      double ms = 0;
      QVERIFY(!parse_error(x, &ms).empty());
      qInfo("rejected in %.3f ms", ms);  // measured, not asserted: RSS below is the bound
    }
    getrusage(RUSAGE_SELF, &after);
    // Peak RSS grows by less than 16 MiB (ru_maxrss is KiB).
    QVERIFY(after.ru_maxrss - before.ru_maxrss < 16 * 1024);
  }

  void openReportsOsErrors() {
    try {
      File::open("/nonexistent/dir/model.gguf");
      QFAIL("no error");
    } catch (const Error& e) {
      QCOMPARE(int(e.kind()), int(ErrorKind::Io));
      QVERIFY(std::string(e.what()).find("/nonexistent/dir/model.gguf") != std::string::npos);
      QVERIFY(std::string(e.what()).find("No such file") != std::string::npos);
    }
    const QString dir = moelab::test::temp_dir("gguf_reader");
    try {
      File::open(dir.toStdString());
      QFAIL("no error");
    } catch (const Error& e) {
      QVERIFY(std::string(e.what()).find("folder") != std::string::npos);
    }
    // A file written by the Writer opens through mmap with the same content.
    Writer w;
    w.add_tensor("t", TensorType::F32, {2}, f32_bytes({3, 4}));
    const std::string path = (dir + "/w.gguf").toStdString();
    w.write(path);
    auto f = File::open(path);
    QCOMPARE(f->file_size(), uint64_t(w.to_bytes().size()));
    float v[2];
    std::memcpy(v, f->find_tensor("t")->data, 8);
    QCOMPARE(v[1], 4.f);
  }

  void typeTable() {
    QCOMPARE(type_name(12), std::string("Q4_K"));
    QCOMPARE(type_traits(12)->type_size, 144u);
    QCOMPARE(type_traits(14)->type_size, 210u);
    QCOMPARE(type_traits(10)->type_size, 84u);
    QCOMPARE(type_traits(11)->type_size, 110u);
    QCOMPARE(type_traits(13)->type_size, 176u);
    QCOMPARE(type_traits(8)->type_size, 34u);
    QCOMPARE(type_traits(2)->type_size, 18u);
    QCOMPARE(type_traits(30)->type_size, 2u);
    QCOMPARE(type_traits(39)->type_size, 17u);  // MXFP4: E8M0 byte + 16 bytes of E2M1 nibbles
    QCOMPARE(type_traits(39)->block_size, 32u);
    QVERIFY(type_traits(39)->computable);
    QCOMPARE(type_name(39), std::string("MXFP4"));
    QCOMPARE(type_from_name("mxfp4").value(), TensorType::MXFP4);
    QVERIFY(!type_traits(4));
    QVERIFY(type_name(4).find("removed") != std::string::npos);
    QVERIFY(type_name(200).find("unknown") != std::string::npos);
    QCOMPARE(type_from_name("q8_0").value(), TensorType::Q8_0);
    QVERIFY(!type_from_name("Q9_9"));
  }
};

QTEST_GUILESS_MAIN(TestGgufReader)
#include "test_gguf_reader.moc"
