#include "kref.h"
int main(int argc, char** argv) {
  kref::Program prog("flags", "stub", argc, argv, 1, 1);
  prog.finish();
}
