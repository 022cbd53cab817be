#include "moelab/storage/writer.h"

#include <chrono>
#include <exception>

namespace moelab::storage {

namespace {
using Clock = std::chrono::steady_clock;
}

AsyncWriter::AsyncWriter(const std::string& path, const WriterOptions& options)
    : path_(path), options_(options) {
  if (options_.queue_capacity == 0) options_.queue_capacity = 1;
  if (options_.max_batch == 0) options_.max_batch = 1;
  queue_.reserve(options_.queue_capacity);
  std::promise<void> opened;
  auto ready = opened.get_future();
  thread_ = std::thread([this, p = std::move(opened)]() mutable { loop(std::move(p)); });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

AsyncWriter::~AsyncWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  not_empty_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AsyncWriter::throw_if_failed() const {
  if (error_) throw *error_;
}

uint64_t AsyncWriter::push(Item item) {
  std::unique_lock lock(mu_);
  throw_if_failed();
  if (queue_.size() >= options_.queue_capacity) {
    // Back-pressure: never drop a record; wait for the writer to take a batch, and count it.
    const auto t0 = Clock::now();
    ++stats_.blocked_pushes;
    not_full_.wait(lock, [&] { return queue_.size() < options_.queue_capacity || error_; });
    stats_.blocked_ns += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    throw_if_failed();
  }
  item.seq = next_seq_++;
  const uint64_t seq = item.seq;
  const bool was_empty = queue_.empty();
  queue_.push_back(std::move(item));
  ++stats_.pushed;
  // A call ends the writer's linger (its caller waits for the result).
  const bool wake = was_empty || std::holds_alternative<std::shared_ptr<Call>>(queue_.back().v);
  lock.unlock();
  if (wake) not_empty_.notify_one();
  return seq;
}

int64_t AsyncWriter::call(std::function<int64_t(Store&)> fn) {
  auto c = std::make_shared<Call>();
  c->fn = std::move(fn);
  auto result = c->result.get_future();
  push(Item{0, 0, c});
  return result.get();
}

int64_t AsyncWriter::begin_run(const RunBegin& b) {
  return call([this, b](Store& s) {
    const int64_t id = s.begin_run(b);
    open_runs_.insert(id);  // writer thread only
    return id;
  });
}
int64_t AsyncWriter::upsert_model(const ModelRecord& m) {
  return call([m](Store& s) { return s.upsert_model(m); });
}
int64_t AsyncWriter::ensure_session(const std::string& name) {
  return call([name](Store& s) { return s.ensure_session(name); });
}
void AsyncWriter::set_run_config(int64_t run, const std::string& config_json) {
  call([run, config_json](Store& s) {
    s.set_run_config(run, config_json);
    return int64_t{0};
  });
}
uint64_t AsyncWriter::finish_run(int64_t run, RunStatus status, std::string output,
                                 std::string error) {
  return push(Item{run, 0, Finish{run, status, std::move(output), std::move(error)}});
}
uint64_t AsyncWriter::token(int64_t run, TokenRecord t) {
  return push(Item{run, 0, std::move(t)});
}
uint64_t AsyncWriter::routing(int64_t run, RoutingRecord r) {
  return push(Item{run, 0, std::move(r)});
}
uint64_t AsyncWriter::attention(int64_t run, AttentionSnapshot a) {
  return push(Item{run, 0, std::move(a)});
}
uint64_t AsyncWriter::metric(int64_t run, MetricRecord m) {
  return push(Item{run, 0, std::move(m)});
}
uint64_t AsyncWriter::next_token_dist(int64_t run, NextTokenDist d) {
  return push(Item{run, 0, std::move(d)});
}
uint64_t AsyncWriter::eval_result(int64_t run, EvalResult e) {
  return push(Item{run, 0, std::move(e)});
}

void AsyncWriter::flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = next_seq_;
  committed_cv_.wait(lock, [&] { return committed_seq_ >= target || error_; });
  throw_if_failed();
}

void AsyncWriter::on_commit(std::function<void(const CommitInfo&)> callback) {
  std::lock_guard lock(mu_);
  on_commit_ = std::move(callback);
}

AsyncWriter::Stats AsyncWriter::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::optional<StorageError> AsyncWriter::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

// Writes items [begin, end) (plain records, no calls) in one transaction.
void AsyncWriter::commit(Store& store, std::vector<Item>& items, size_t begin, size_t end) {
  Batch b;
  CommitInfo info;
  std::vector<Finish> finishes;
  // Group consecutive records of the same run and kind into one Batch entry (order kept per run).
  auto group = [](auto& vec, int64_t run) -> auto& {
    if (vec.empty() || vec.back().run_id != run) vec.push_back({run, {}});
    return vec.back().items;
  };
  for (size_t i = begin; i < end; ++i) {
    Item& it = items[i];
    std::visit(
        [&](auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, TokenRecord>) {
            auto& last = info.last_token_position[it.run];
            last = std::max(last, v.position);
            group(b.tokens, it.run).push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, RoutingRecord>) {
            group(b.routing, it.run).push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, AttentionSnapshot>) {
            group(b.attention, it.run).push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, MetricRecord>) {
            group(b.metrics, it.run).push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, NextTokenDist>) {
            group(b.dists, it.run).push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, EvalResult>) {
            group(b.evals, it.run).push_back(std::move(v));
          } else if constexpr (std::is_same_v<T, Finish>) {
            finishes.push_back(std::move(v));
          }
        },
        it.v);
  }
  store.write(b);
  // finish_run runs its own transaction right after the records (it needs their aggregates).
  for (const auto& f : finishes) {
    store.finish_run(f.run, f.status, f.output, f.error);
    open_runs_.erase(f.run);
  }
  info.seq_end = items[end - 1].seq + 1;
  std::function<void(const CommitInfo&)> cb;
  {
    std::lock_guard lock(mu_);
    stats_.committed += end - begin;
    ++stats_.transactions;
    committed_seq_ = info.seq_end;
    cb = on_commit_;
  }
  committed_cv_.notify_all();
  if (cb) cb(info);
}

void AsyncWriter::fail_open_runs(Store& store, const StorageError& cause) {
  for (const int64_t run : open_runs_) {
    try {
      store.finish_run(
          run, RunStatus::Failed, {},
          std::string("the experiment store failed while recording this run: ") + cause.what());
    } catch (const std::exception&) {
    }
  }
  open_runs_.clear();
}

void AsyncWriter::loop(std::promise<void> opened) {
  std::unique_ptr<Store> store;
  try {
    store = std::make_unique<Store>(path_, options_.open);
  } catch (...) {
    opened.set_exception(std::current_exception());
    return;
  }
  opened.set_value();
  std::vector<Item> items;
  items.reserve(options_.max_batch);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      not_empty_.wait(lock, [&] { return !queue_.empty() || stop_; });
      if (queue_.empty() && stop_) break;
      if (options_.linger.count() > 0 && !stop_)  // gather a burst into one transaction
        not_empty_.wait_for(lock, options_.linger, [&] {
          return stop_ || queue_.size() >= options_.max_batch ||
                 std::holds_alternative<std::shared_ptr<Call>>(queue_.back().v);
        });
      const size_t n = std::min(queue_.size(), options_.max_batch);
      items.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    }
    not_full_.notify_all();
    try {
      // Calls (begin_run ...) split the batch: records before them are committed first.
      size_t start = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        auto* c = std::get_if<std::shared_ptr<Call>>(&items[i].v);
        if (!c) continue;
        if (i > start) commit(*store, items, start, i);
        try {
          (*c)->result.set_value((*c)->fn(*store));
        } catch (...) {
          (*c)->result.set_exception(std::current_exception());  // the caller's error only
        }
        {
          std::lock_guard lock(mu_);
          committed_seq_ = items[i].seq + 1;
          ++stats_.committed;
        }
        committed_cv_.notify_all();
        start = i + 1;
      }
      if (start < items.size()) commit(*store, items, start, items.size());
    } catch (const StorageError& e) {
      // Record the cause on the runs this writer began and did not finish, now, while it is
      // known: otherwise they stay 'running' until a later open relabels them "interrupted:
      // process ended" and the real cause (disk full, a damaged table) is lost. Best effort: the
      // update may fail on the same fault, and then that later relabelling is what remains.
      fail_open_runs(*store, e);
      std::lock_guard lock(mu_);
      if (!error_) error_ = e;
      // Everything not committed is lost; say how much and fail the calls waiting for results.
      uint64_t lost = 0;
      for (auto& it : items) {
        if (it.seq < committed_seq_) continue;
        if (auto* c = std::get_if<std::shared_ptr<Call>>(&it.v))
          (*c)->result.set_exception(std::make_exception_ptr(e));
        ++lost;
      }
      for (auto& it : queue_) {
        if (auto* c = std::get_if<std::shared_ptr<Call>>(&it.v))
          (*c)->result.set_exception(std::make_exception_ptr(e));
        ++lost;
      }
      queue_.clear();
      stats_.lost_records += lost;
      committed_seq_ = next_seq_;
    } catch (const std::exception& e) {
      const StorageError err(StorageErrorKind::Internal, e.what(), {path_, "writer"});
      fail_open_runs(*store, err);
      std::lock_guard lock(mu_);
      if (!error_) error_ = err;
      queue_.clear();
      committed_seq_ = next_seq_;
    }
    items.clear();
    committed_cv_.notify_all();
    not_full_.notify_all();
    bool failed;
    {
      std::lock_guard lock(mu_);
      failed = error_.has_value();
    }
    if (failed) {
      // Keep failing every queued call until stopped: push() throws from now on.
      std::unique_lock lock(mu_);
      not_empty_.wait(lock, [&] { return stop_; });
      break;
    }
  }
}

// ---------------------------------------------------------------- RunWriter

RunWriter::RunWriter(AsyncWriter& writer, const std::string& session_name,
                     const std::optional<ModelRecord>& model, const std::string& config_json,
                     const std::string& prompt, const std::string& kind)
    : writer_(writer) {
  RunBegin b;
  b.session_id = writer_.ensure_session(session_name);
  b.model_id = model ? writer_.upsert_model(*model) : 0;
  b.config_json = config_json;
  b.prompt = prompt;
  b.kind = kind;
  id_ = writer_.begin_run(b);
}

void RunWriter::finish(RunStatus status, const std::string& output, const std::string& error) {
  finished_ = true;
  writer_.finish_run(id_, status, output, error);
  writer_.flush();
}

RunWriter::~RunWriter() {
  if (finished_) return;
  try {
    const bool unwinding = std::uncaught_exceptions() > 0;
    writer_.finish_run(id_, unwinding ? RunStatus::Failed : RunStatus::Cancelled, {},
                       unwinding ? "the run ended with an error" : "the run was abandoned");
    writer_.flush();
  } catch (...) {  // the writer failed; its error was already reported to the producer
  }
}

int64_t store_generation(const std::string& db_path, const StoredGeneration& g) {
  Store store(db_path);
  RunBegin b;
  b.session_id = store.ensure_session(g.session_name);
  b.model_id = g.model ? store.upsert_model(*g.model) : 0;
  b.config_json = g.config_json;
  b.prompt = g.prompt;
  b.kind = g.kind;
  const int64_t id = store.begin_run(b);
  Batch batch;
  batch.tokens.push_back({id, g.tokens});
  batch.routing.push_back({id, g.routing});
  batch.metrics.push_back({id, g.metrics});
  batch.evals.push_back({id, g.evals});
  store.write(batch);
  store.finish_run(id, g.status, g.output, g.error);
  return id;
}

}  // namespace moelab::storage
