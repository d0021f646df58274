"""A PyTorch interpreter of the ncnn layers Real-ESRGAN's .param graphs use, for parity tests only.

It runs the graph as the .param file wires it (blob names, Split/Concat/Eltwise/BinaryOp/Interp,
activations fused into Convolution), so a test compares our parameter-name mapping against the
file's own topology rather than against a second copy of that mapping. Weights come per layer
name from `sslsr.weights.ncnn.read_weights` (the byte layout, which consumes the whole .bin).
"""

import torch
import torch.nn.functional as F


def run(layers, weights, x):
    """NCHW float32 tensor -> the graph's last top blob."""
    blobs = {}
    for layer in layers:
        ins = [blobs[b] for b in layer.bottoms]
        t = layer.type
        if t == "Input":
            out = [x]
        elif t == "Split":
            out = [ins[0]] * len(layer.tops)
        elif t == "Concat":
            out = [torch.cat(ins, 1)]
        elif t == "Convolution":
            w = weights[layer.name]
            y = F.conv2d(ins[0], torch.from_numpy(w["weight"]), torch.from_numpy(w["bias"]), padding=layer.int(1) // 2)
            if layer.int(9) == 2:
                y = F.leaky_relu(y, layer.floats(10)[0])
            out = [y]
        elif t == "PReLU":
            out = [F.prelu(ins[0], torch.from_numpy(weights[layer.name]["weight"]))]
        elif t == "Eltwise":
            c = layer.floats(1)
            out = [sum(ci * xi for ci, xi in zip(c, ins))]
        elif t == "BinaryOp":
            assert layer.int(0) == 0  # add
            out = [ins[0] + ins[1]]
        elif t == "PixelShuffle":
            out = [F.pixel_shuffle(ins[0], layer.int(0))]
        elif t == "Interp":
            mode = {1: "nearest", 3: "bicubic"}[layer.int(0)]
            h, w = ins[0].shape[-2:]
            size = (int(h * layer.float(1)), int(w * layer.float(2)))
            out = [F.interpolate(ins[0], size=size, mode=mode, **({"align_corners": False} if mode == "bicubic" else {}))]
        else:
            raise NotImplementedError(t)
        blobs.update(zip(layer.tops, out))
    return blobs[layers[-1].tops[0]]
