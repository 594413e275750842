/* A stand-in for the macOS SDK's TargetConditionals.h, used only when scripts/test
 * checks the macOS targets from Linux (`cargo check`/`clippy`, nothing linked): ring's
 * C code includes it to learn which Apple platform it is built for. A real macOS build
 * uses the SDK's own. */
#ifndef TARGET_CONDITIONALS_STAND_IN
#define TARGET_CONDITIONALS_STAND_IN
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#endif
