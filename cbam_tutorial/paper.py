"""The numbers reported by Woo et al. (2018), for display beside this book's results.

All are ImageNet-1K figures (a different and much larger task than CIFAR-10): top-1 and
top-5 error in percent, parameters in millions, GFLOPs as the paper counts them.
"""

# Table 1: channel attention pooling, ResNet-50.
CHANNEL_POOLING = {
    "baseline": {"top1": 24.56, "top5": 7.50},
    "avg (SE)": {"top1": 23.14, "top5": 6.70},
    "max": {"top1": 23.20, "top5": 6.83},
    "avg+max": {"top1": 22.80, "top5": 6.52},
}

# Table 2: spatial attention (with channel attention), ResNet-50.
SPATIAL = {
    "conv1x1, k=3": {"top1": 22.96, "top5": 6.64},
    "conv1x1, k=7": {"top1": 22.90, "top5": 6.47},
    "avg+max, k=3": {"top1": 22.68, "top5": 6.41},
    "avg+max, k=7": {"top1": 22.66, "top5": 6.31},
}

# Table 3: arrangement of the two gates, ResNet-50.
ARRANGEMENT = {
    "SE": {"top1": 23.14, "top5": 6.70},
    "channel-spatial": {"top1": 22.66, "top5": 6.31},
    "spatial-channel": {"top1": 22.78, "top5": 6.42},
    "parallel": {"top1": 22.95, "top5": 6.59},
}

# Table 4: ResNet-50 cost and top-1 error, baseline / +SE / +CBAM.
RESNET50_COST = {
    "none": {"parameters_m": 25.56, "gflops": 3.858, "top1": 24.56},
    "se": {"parameters_m": 28.09, "gflops": 3.860, "top1": 23.14},
    "cbam": {"parameters_m": 28.09, "gflops": 3.864, "top1": 22.66},
}

# Table 4: top-1 error of other depths, baseline / +SE / +CBAM.
RESNET_TOP1 = {
    "ResNet-18": (29.60, 29.41, 29.27),
    "ResNet-34": (26.69, 26.13, 25.99),
    "ResNet-50": (24.56, 23.14, 22.66),
    "ResNet-101": (23.38, 22.35, 21.51),
}
