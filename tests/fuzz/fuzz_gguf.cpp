// Fuzz target for the GGUF reader and the model card: any byte string must either parse or be
// rejected with moelab::Error - never crash, hang, leak or read out of bounds.
// Built as a libFuzzer target with clang (-DMOELAB_FUZZ=ON, preset "fuzz"); with any compiler
// also as a replay driver that runs the seed corpus and the regression files once (label unit).
#include <cstddef>
#include <cstdint>
#include <exception>

#include "moelab/gguf/gguf.h"
#include "moelab/model/card.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = moelab::gguf::File::from_memory(data, size, "fuzz.gguf");
    for (const auto& v : f->metadata()) (void)v.to_display();
    for (const auto& t : f->tensors()) {
      (void)t.shape_string();
      // Touch the first and last byte of every tensor: they must be inside the buffer.
      if (t.nbytes) {
        volatile uint8_t a = t.data[0], b = t.data[t.nbytes - 1];
        (void)a;
        (void)b;
      }
    }
    (void)moelab::make_model_card(*f);
  } catch (const moelab::Error&) {
  }
  return 0;
}
