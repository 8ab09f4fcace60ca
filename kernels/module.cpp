// Empty Python module `fastreg._C`: importing it loads the library, whose static
// TORCH_LIBRARY initializers register torch.ops.fastreg.* (as in pytorch/extension-cpp).
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
