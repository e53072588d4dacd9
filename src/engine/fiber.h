// Fiber: a stackful coroutine (POSIX ucontext) — the way a sequential program and the engine's loop take turns on
// one thread. resume() runs the fiber until it yields or returns; yield(), called inside it, goes back. A switch is
// a few hundred nanoseconds and involves no scheduler, where a hand-off between two threads costs a wake-up (and,
// with ggml's OpenMP workers spinning on the other cores, often a time slice).
//
// Rules: the body must not let an exception escape (catch everything inside); do not yield from inside a catch
// block (the C++ runtime keeps the exceptions being handled per thread, not per fiber). The stack is 8 MiB of
// address space with a guard page below it: only the pages a program touches become resident.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>

namespace kvlens {

class Fiber {
public:
    explicit Fiber(std::function<void()> body, size_t stack_bytes = size_t(8) << 20);
    ~Fiber();
    Fiber(const Fiber &) = delete;
    Fiber & operator=(const Fiber &) = delete;

    void resume();  // caller: run the fiber until it yields or returns (no-op once done)
    void yield();   // inside the fiber: back to the caller of resume()
    bool started() const { return started_; }
    bool done() const { return done_; }

private:
    struct Impl;
    static void entry(unsigned lo, unsigned hi);
    std::unique_ptr<Impl> impl_;
    std::function<void()> body_;
    bool started_ = false, done_ = false;
};

}  // namespace kvlens
