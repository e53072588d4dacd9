// Fiber on ucontext (makecontext / swapcontext), with AddressSanitizer's fiber annotations when it is on.
#include "fiber.h"

#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "kvlens/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define KVLENS_ASAN_FIBERS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVLENS_ASAN_FIBERS 1
#endif
#endif
#ifdef KVLENS_ASAN_FIBERS
#include <sanitizer/common_interface_defs.h>
#endif

namespace kvlens {

struct Fiber::Impl {
    ucontext_t caller{}, self{};
    void * map = nullptr;
    size_t map_bytes = 0, page = 0;
    char * stack = nullptr;
    size_t stack_bytes = 0;
#ifdef KVLENS_ASAN_FIBERS
    void * fake_caller = nullptr;  // ASan's fake stack of the side that switched away
    void * fake_self = nullptr;
    const void * caller_bottom = nullptr;
    size_t caller_size = 0;
#endif
};

Fiber::Fiber(std::function<void()> body, size_t stack_bytes) : impl_(std::make_unique<Impl>()), body_(std::move(body)) {
    Impl & im = *impl_;
    im.page = (size_t) sysconf(_SC_PAGESIZE);
    im.stack_bytes = (stack_bytes + im.page - 1) / im.page * im.page;
    im.map_bytes = im.stack_bytes + im.page;  // + a guard page below the stack
    im.map = mmap(nullptr, im.map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (im.map == MAP_FAILED) throw Error("cannot map a program's stack");
    mprotect(im.map, im.page, PROT_NONE);
    im.stack = (char *) im.map + im.page;
}

Fiber::~Fiber() {
    if (impl_->map) munmap(impl_->map, impl_->map_bytes);
}

void Fiber::entry(unsigned lo, unsigned hi) {
    Fiber * f = (Fiber *) (((uintptr_t) hi << 32) | (uintptr_t) lo);
#ifdef KVLENS_ASAN_FIBERS
    __sanitizer_finish_switch_fiber(nullptr, &f->impl_->caller_bottom, &f->impl_->caller_size);
#endif
    f->body_();  // never throws (the rule above)
    f->done_ = true;
    Impl & im = *f->impl_;
#ifdef KVLENS_ASAN_FIBERS
    __sanitizer_start_switch_fiber(nullptr, im.caller_bottom, im.caller_size);  // nullptr: this fiber ends
#endif
    swapcontext(&im.self, &im.caller);  // not resumed again
}

void Fiber::resume() {
    if (done_) return;
    Impl & im = *impl_;
    if (!started_) {
        started_ = true;
        getcontext(&im.self);
        im.self.uc_stack.ss_sp = im.stack;
        im.self.uc_stack.ss_size = im.stack_bytes;
        im.self.uc_link = nullptr;
        const uintptr_t p = (uintptr_t) this;
        makecontext(&im.self, (void (*)()) & Fiber::entry, 2, (unsigned) (p & 0xffffffffu), (unsigned) (p >> 32));
    }
#ifdef KVLENS_ASAN_FIBERS
    __sanitizer_start_switch_fiber(&im.fake_caller, im.stack, im.stack_bytes);
#endif
    swapcontext(&im.caller, &im.self);
#ifdef KVLENS_ASAN_FIBERS
    __sanitizer_finish_switch_fiber(im.fake_caller, nullptr, nullptr);
#endif
}

void Fiber::yield() {
    Impl & im = *impl_;
#ifdef KVLENS_ASAN_FIBERS
    __sanitizer_start_switch_fiber(&im.fake_self, im.caller_bottom, im.caller_size);
#endif
    swapcontext(&im.self, &im.caller);
#ifdef KVLENS_ASAN_FIBERS
    __sanitizer_finish_switch_fiber(im.fake_self, &im.caller_bottom, &im.caller_size);
#endif
}

}  // namespace kvlens
