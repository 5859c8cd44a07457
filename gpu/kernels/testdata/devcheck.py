#!/usr/bin/env python3
"""Runs gpu/kernels' device cases on a real GPU and compares with the Go twins.

Usage: devcheck.py CASES_DIR PTX_FILE [--bench]

CASES_DIR is what `RINGTRAIN_KERNELS_DEVCASES=DIR go test -run
WriteDeviceCases ./gpu/kernels` wrote. Only Python's standard library and the
driver's libcuda.so.1 (through ctypes) are used: the GPU machines have no Go
toolchain. Exit status 0 when every case matches.
"""
import ctypes, ctypes.util, json, os, struct, sys, time, array, math

def load_cuda():
    names = ["libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"]
    for n in names:
        try:
            return ctypes.CDLL(n)
        except OSError:
            pass
    sys.exit("devcheck: libcuda.so.1 not found")

cu = load_cuda()
u64 = ctypes.c_uint64

def ck(r, what):
    if r != 0:
        s = ctypes.c_char_p()
        cu.cuGetErrorName(r, ctypes.byref(s))
        raise RuntimeError("%s: %s (%d)" % (what, s.value.decode() if s.value else "?", r))

def main():
    cases_dir, ptx_file = sys.argv[1], sys.argv[2]
    bench = "--bench" in sys.argv
    ck(cu.cuInit(0), "cuInit")
    dev = ctypes.c_int()
    ck(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    cu.cuDeviceGetName(name, 256, dev)
    drv = ctypes.c_int()
    cu.cuDriverGetVersion(ctypes.byref(drv))
    print("device:", name.value.decode(), "driver API", drv.value)
    ctx = ctypes.c_void_p()
    ck(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    ck(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

    ptx = open(ptx_file, "rb").read() + b"\0"
    mod = ctypes.c_void_p()
    # JIT with an error log so a PTX problem says what it is.
    logbuf = ctypes.create_string_buffer(1 << 16)
    opts = (ctypes.c_int * 2)(5, 6)  # CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
    vals = (ctypes.c_void_p * 2)(ctypes.cast(logbuf, ctypes.c_void_p), ctypes.c_void_p(len(logbuf)))
    t0 = time.perf_counter()
    r = cu.cuModuleLoadDataEx(ctypes.byref(mod), ptx, 2, opts, vals)
    if r != 0:
        print(logbuf.value.decode(errors="replace"))
    ck(r, "cuModuleLoadDataEx")
    print("module JIT: %.1f ms" % ((time.perf_counter() - t0) * 1e3))

    funcs = {}
    def func(k):
        if k not in funcs:
            f = ctypes.c_void_p()
            ck(cu.cuModuleGetFunction(ctypes.byref(f), mod, k.encode()), "cuModuleGetFunction " + k)
            funcs[k] = f
        return funcs[k]

    def alloc(nbytes):
        p = u64()
        ck(cu.cuMemAlloc_v2(ctypes.byref(p), max(nbytes, 4)), "cuMemAlloc")
        return p

    def launch(f, l, args):
        params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args])
        g, b = l["Grid"], l["Block"]
        ck(cu.cuLaunchKernel(f, g[0], g[1], g[2], b[0], b[1], b[2], l["Shared"], None, params, None), "cuLaunchKernel")

    man = json.load(open(os.path.join(cases_dir, "cases.json")))
    failures = 0
    for c in man["cases"]:
        f = func(c["kernel"])
        for li, l in enumerate(c["launches"]):
            bufs, host = {}, {}
            for b, fn in c["bufs"].items():
                data = open(os.path.join(cases_dir, fn), "rb").read()
                p = alloc(len(data))
                hb = ctypes.create_string_buffer(data, len(data))
                ck(cu.cuMemcpyHtoD_v2(p, hb, len(data)), "HtoD")
                bufs[b], host[b] = p, len(data)
            args = []
            for a in c["args"]:
                if "buf" in a:
                    args.append(u64(bufs[a["buf"]].value))
                elif "i32" in a:
                    args.append(ctypes.c_int32(a["i32"]))
                elif "f32" in a:
                    args.append(ctypes.c_float(a["f32"]))
                else:  # i32 zero is omitted by Go's omitempty
                    args.append(ctypes.c_int32(0))
            launch(f, l, args)
            ck(cu.cuCtxSynchronize(), "sync " + c["name"])
            for chk in c["checks"]:
                want = open(os.path.join(cases_dir, chk["file"]), "rb").read()
                out = ctypes.create_string_buffer(len(want))
                ck(cu.cuMemcpyDtoH_v2(out, bufs[chk["buf"]], len(want)), "DtoH")
                got = out.raw
                tag = "%s[%s] launch %d %s/%s" % (c["name"], chk["buf"], li, l["Grid"], l["Block"])
                if got == want:
                    print("ok   ", tag)
                    continue
                tol = chk.get("reltol", 0)
                width = 8 if chk["buf"] == "rowloss" else (2 if c["kernel"] == "f32_to_f16" or (c["kernel"] == "f16_to_f32" and chk["buf"] == "x") else 4)
                code = {8: "d", 4: "f" if chk["buf"] != "arg" else "i", 2: "H"}[width]
                ga, wa = array.array(code, got), array.array(code, want)
                bad, worst, first = 0, 0.0, None
                for i, (x, y) in enumerate(zip(ga, wa)):
                    if code in "df":
                        if (x != x and y != y):
                            continue
                        if x == y and math.copysign(1, x) == math.copysign(1, y):
                            if got[i*width:(i+1)*width] == want[i*width:(i+1)*width] or tol:
                                continue
                        d = abs(x - y) / (1 + abs(y)) if x == x and y == y else float("inf")
                        if tol and d <= tol:
                            worst = max(worst, d)
                            continue
                    elif x == y:
                        continue
                    bad += 1
                    if first is None:
                        first = (i, x, y, got[i*width:(i+1)*width].hex(), want[i*width:(i+1)*width].hex())
                if bad == 0:
                    print("ok~  ", tag, "(within reltol %g, worst %.3g; %d of %d bit-identical)" % (
                        tol, worst, sum(1 for i in range(len(ga)) if got[i*width:(i+1)*width] == want[i*width:(i+1)*width]), len(ga)))
                else:
                    failures += 1
                    print("FAIL ", tag, "%d of %d differ; first at %d: gpu %r (%s), twin %r (%s)" % ((bad, len(ga)) + first))
            for p in bufs.values():
                cu.cuMemFree_v2(p)

    if bench:
        run_bench(func, alloc, launch)
    print("devcheck: %d failing checks" % failures)
    return 1 if failures else 0

def run_bench(func, alloc, launch):
    def lj(grid, block):
        return {"Grid": list(grid), "Block": list(block), "Shared": 0}
    def timeit(name, k, l, args, reps=50):
        f = func(k)
        launch(f, l, args)
        ck(cu.cuCtxSynchronize(), "sync")
        t0 = time.perf_counter()
        for _ in range(reps):
            launch(f, l, args)
        ck(cu.cuCtxSynchronize(), "sync")
        print("bench %-36s %9.1f us" % (name, (time.perf_counter() - t0) / reps * 1e6))
    ceil = lambda a, b: (a + b - 1) // b
    big = alloc(4096 * 4096 * 4)
    ck(cu.cuMemsetD32_v2(big, 0x3f800000, 4096 * 4096), "memset")
    out = alloc(4096 * 4 * 16)
    for rows, cols in [(4096, 4096), (4096, 10), (64, 10), (512, 120)]:
        timeit("col_sum %dx%d" % (rows, cols), "col_sum", lj((min(ceil(cols, 32), 65535), 1, 1), (32, 32, 1)),
               [u64(big.value), u64(out.value), ctypes.c_int32(rows), ctypes.c_int32(cols), ctypes.c_int32(0)])
    for rows, cols in [(6, 400000), (16, 400000), (6, 50176), (4096, 10)]:
        timeit("row_sum %dx%d" % (rows, cols), "row_sum", lj((min(rows, 65535), 1, 1), (256, 1, 1)),
               [u64(big.value), u64(out.value), ctypes.c_int32(rows), ctypes.c_int32(cols), ctypes.c_int32(0)])
    n = 4096 * 4096
    timeit("relu_fwd 16M", "relu_fwd", lj((min(ceil(n, 256), 65535), 1, 1), (256, 1, 1)),
           [u64(big.value), u64(big.value), ctypes.c_int32(n)])
    # LeNet conv1 im2col at batch 512: C=1, 28x28, k5 pad2 -> col 25 x 401408
    B, C, H, W, k, s, p = 512, 1, 28, 28, 5, 1, 2
    ncol = C * k * k * B * H * W
    col = alloc(ncol * 4)
    timeit("im2col lenet1 B512", "im2col", lj((min(ceil(ncol, 256), 65535), 1, 1), (256, 1, 1)),
           [u64(big.value), u64(col.value)] + [ctypes.c_int32(v) for v in (B, C, H, W, k, s, p, H, W)])
    nx = B * C * H * W
    timeit("col2im lenet1 B512", "col2im", lj((min(ceil(nx, 256), 65535), 1, 1), (256, 1, 1)),
           [u64(col.value), u64(big.value)] + [ctypes.c_int32(v) for v in (B, C, H, W, k, s, p, H, W)])

if __name__ == "__main__":
    sys.exit(main())
