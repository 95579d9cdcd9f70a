// What tch 0.26's CModule does not expose about a TorchScript module, for src/model/script.rs:
// its buffers (BN running statistics), the ops of its compiled code (the allow-list check), a deep
// copy, and train/eval queries. Every function catches C++ exceptions and returns the message as a
// malloc'd string (NULL on success), which the caller frees with qt_free_str.
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

typedef torch::jit::script::Module *module;
typedef torch::Tensor *tensor;

static char *dup_str(const std::string &s) {
  char *out = (char *)malloc(s.size() + 1);
  if (out) memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

#define QT_PROTECT(body)                         \
  try {                                          \
    body;                                        \
    return nullptr;                              \
  } catch (const c10::Error &e) {                \
    return dup_str(e.what_without_backtrace());  \
  } catch (const std::exception &e) {            \
    return dup_str(e.what());                    \
  } catch (...) {                                \
    return dup_str("unknown C++ exception");     \
  }

extern "C" {

void qt_free_str(char *s) { free(s); }

// Loads an archive onto the CPU (the caller vetted it first). *out receives the module.
char *qt_load(const char *path, module *out) {
  QT_PROTECT(*out = new torch::jit::script::Module(torch::jit::load(std::string(path), torch::kCPU)));
}

void qt_free(module m) { delete m; }

// Every buffer of the module and its submodules by dotted name (BN running_mean, running_var,
// num_batches_tracked, ...). The tensors share storage with the module's.
char *qt_named_buffers(module m, void *data, void (*f)(void *, const char *, tensor)) {
  QT_PROTECT(for (const auto &b : m->named_buffers(/*recurse=*/true)) {
    f(data, b.name.c_str(), new torch::Tensor(b.value));
  });
}

// Every parameter by dotted name, sharing storage with the module's.
char *qt_named_parameters(module m, void *data, void (*f)(void *, const char *, tensor)) {
  QT_PROTECT(for (const auto &p : m->named_parameters(/*recurse=*/true)) {
    f(data, p.name.c_str(), new torch::Tensor(p.value));
  });
}

// The kind of every node (e.g. "aten::conv2d", "prim::GetAttr") of every function and method
// compiled into the module's compilation unit, nested blocks included, each with the qualified
// name of the function it appears in.
char *qt_graph_ops(module m, void *data, void (*f)(void *, const char *, const char *)) {
  QT_PROTECT({
    std::function<void(const std::string &, torch::jit::Block *)> walk =
        [&](const std::string &fname, torch::jit::Block *b) {
          for (torch::jit::Node *n : b->nodes()) {
            f(data, fname.c_str(), n->kind().toQualString());
            for (torch::jit::Block *sub : n->blocks()) walk(fname, sub);
          }
        };
    auto cu = m->_ivalue()->compilation_unit();
    for (torch::jit::Function *fn : cu->get_functions()) {
      if (!fn->isGraphFunction()) continue;
      auto graph = torch::jit::toGraphFunction(*fn).graph();
      walk(fn->qualname().qualifiedName(), graph->block());
    }
  });
}

// A deep copy: its own parameters and buffers, the same code.
char *qt_clone(module m, module *out) { QT_PROTECT(*out = new torch::jit::script::Module(m->clone())); }

char *qt_set_train(module m, int on) { QT_PROTECT(m->train(on != 0)); }

// forward(x) -> tensor; an error when the output is not a tensor.
char *qt_forward(module m, tensor x, tensor *out) {
  QT_PROTECT({
    std::vector<torch::jit::IValue> inputs{*x};
    torch::jit::IValue y = m->forward(std::move(inputs));
    if (!y.isTensor()) throw std::invalid_argument("forward returned a " + y.tagKind() + ", not a tensor");
    *out = new torch::Tensor(y.toTensor());
  });
}

char *qt_save(module m, const char *path) { QT_PROTECT(m->save(std::string(path))); }
}
