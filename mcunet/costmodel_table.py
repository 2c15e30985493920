"""Cost model coefficients: instructions = sum(coefficient * feature) per core and
kernel (mcunet.costmodel.features), fitted by scripts/fit_costmodel.py (which wrote
this file) to 3271 single-step spans of 75 corpus networks
counted on the emulated MPS2 boards.
Refitted with --only: fully_connected_s8, fully_connected_s8_dsp,
fully_connected_s8_dsp_col, to 231 spans of 40 networks.
Fitted with --merge, the other cores kept: cortex-m33 (mps2-an505), to 1524 single-step
spans of 124 networks.
Refitted with --only: conv2d_s8_dsp, to 549 spans of 16 networks.
Refitted with --only: depthwise_conv_s8_dsp, depthwise_conv_inplace_s8_dsp (the plane and
band kernels), to 420 spans of 23 networks on the M4, M7 and M33.
Refitted with --only: fully_connected_s8, fully_connected_s8_dsp,
fully_connected_s8_dsp_col (the one-multiply rescale, mcunet_round_scaled_near), to 308
spans of 40 networks on the M3, M4, M7 and M33."""

TABLE = {
    'cortex-m3': {
        'add_s8': {'calls': 3363},
        'average_pool_s8': {'calls': 173.234, 'valid_taps': 4.39925},
        'conv2d_s8': {'calls': 57.14, 'macs': 5.99461, 'out': 32.5875, 'in': 0.377503, 'pixels': 27.6425, 'im2col': 0.926045, 'valid_taps': 8.16541, 'row_taps': 4.9041, 'rq_general': 4.15263, 'fused': 58.6478},
        'depthwise_conv_inplace_s8': {'out': 35.4788, 'in': 0.180918, 'valid_taps': 9.88091, 'row_taps': 21.9837},
        'depthwise_conv_s8': {'macs': 1.20129, 'valid_taps': 6.65936, 'row_taps': 31.915},
        'dequantize_s8_f32': {'calls': 1050},
        'fully_connected_s8': {'calls': 13.4442, 'macs': 6.66577, 'out': 17.9647},
        'max_pool_s8': {'calls': 78.4219, 'pixels': 5.76018, 'taps': 4.06799},
        'mean_s8': {'calls': 33.9559, 'out': 28.3424, 'in': 3.89947},
        'mul_s8': {'calls': 1484},
        'softmax_s8': {'calls': 866.539, 'out': 218.609},
    },
    'cortex-m4': {
        'add_s8': {'calls': 3362},
        'average_pool_s8': {'calls': 173.654, 'valid_taps': 4.40148},
        'conv2d_s8_dsp': {'calls': 620.285, 'macs': 0.903905, 'macs_per_block': 0.318792, 'out': 14.2288, 'pixels': 16.9442, 'im2col': 0.00590972, 'row_taps': 1.27582, 'rq_general': 8.29581, 'fused': 28.9178, 'looped_macs': 0.0324481},
        'depthwise_conv_inplace_s8_dsp': {'macs': 1.08121, 'in': 7.23229, 'channels': 37.26, 'pair_out': 13.5054, 'tap_groups': 2.05594, 'channel_taps': 2.15797},
        'depthwise_conv_s8': {'macs': 2.89452, 'valid_taps': 2.48469, 'row_taps': 37.6776},
        'depthwise_conv_s8_dsp': {'calls': 839.626, 'macs': 1.21175, 'in': 2.26172, 'channels': 248.525, 'valid_taps': 1.47282},
        'fully_connected_s8_dsp': {'calls': 37.2553, 'macs': 1.34226, 'out': 20.577, 'in': 2.18227},
        'max_pool_s8': {'calls': 79.3936, 'pixels': 5.74104, 'taps': 4.06775},
        'mean_s8': {'calls': 33.5256, 'out': 28.3861, 'in': 3.89987},
        'mul_s8': {'calls': 1484},
        'softmax_s8': {'calls': 421.568, 'out': 260.043},
        'fully_connected_s8_dsp_col': {'calls': 5.86186, 'macs': 1.30274, 'out': 19.6244, 'in': 4.07298},
    },
    'cortex-m7': {
        'add_s8': {'calls': 3395},
        'average_pool_s8': {'calls': 255.233, 'valid_taps': 4.35576},
        'conv2d_s8_dsp': {'calls': 589.449, 'macs': 0.903176, 'macs_per_block': 0.319705, 'out': 13.6377, 'pixels': 17.3461, 'im2col': 0.0781097, 'row_taps': 1.75432, 'rq_general': 8.40044, 'fused': 28.6493, 'looped_macs': 0.032583},
        'depthwise_conv_inplace_s8_dsp': {'macs': 1.08122, 'in': 7.2322, 'channels': 37.26, 'pair_out': 13.5055, 'tap_groups': 2.05592, 'channel_taps': 2.15795},
        'depthwise_conv_s8': {'macs': 2.46469, 'valid_taps': 2.47845, 'row_taps': 41.0539},
        'depthwise_conv_s8_dsp': {'calls': 839.548, 'macs': 1.21265, 'in': 2.26236, 'channels': 248.479, 'valid_taps': 1.47175},
        'fully_connected_s8_dsp': {'calls': 37.4515, 'macs': 1.34166, 'out': 20.6519, 'in': 2.18841},
        'max_pool_s8': {'calls': 78.4376, 'pixels': 5.75771, 'taps': 4.06833},
        'mean_s8': {'calls': 32.0403, 'out': 27.2067, 'in': 3.91704},
        'mul_s8': {'calls': 1475},
        'requantize_s8': {'calls': 342},
        'softmax_s8': {'calls': 432.374, 'out': 259.467},
        'fully_connected_s8_dsp_col': {'calls': 5.29994, 'macs': 1.30291, 'out': 19.6177, 'in': 4.08058},
    },
    'cortex-m33': {
        'add_s8': {'calls': 72.6826, 'out': 58.4336},
        'average_pool_s8': {'calls': 177.096, 'valid_taps': 4.27614},
        'conv2d_s8_dsp': {'calls': 620.272, 'macs': 0.90365, 'macs_per_block': 0.319522, 'out': 14.2296, 'pixels': 16.9441, 'im2col': 0.00593272, 'row_taps': 1.27544, 'rq_general': 8.29591, 'fused': 28.9181, 'looped_macs': 0.0324575},
        'depthwise_conv_inplace_s8_dsp': {'macs': 1.08099, 'in': 7.23237, 'channels': 37.2588, 'pair_out': 13.5094, 'tap_groups': 2.05627, 'channel_taps': 2.1594},
        'depthwise_conv_s8': {'macs': 2.96961, 'valid_taps': 2.42962, 'row_taps': 38.6706},
        'depthwise_conv_s8_dsp': {'calls': 839.344, 'macs': 1.21212, 'in': 2.26203, 'channels': 248.415, 'valid_taps': 1.47242},
        'fully_connected_s8_dsp': {'calls': 37.1629, 'macs': 1.34203, 'out': 20.6377, 'in': 2.18376},
        'fully_connected_s8_dsp_col': {'calls': 5.82917, 'macs': 1.30169, 'out': 19.6492, 'in': 4.07234},
        'max_pool_s8': {'calls': 69.2464, 'pixels': 5.87539, 'taps': 4.06851},
        'mean_s8': {'calls': 31.1969, 'out': 28.2865, 'in': 3.92254},
        'mul_s8': {'calls': 1484},
        'softmax_s8': {'calls': 345.979, 'out': 269.229},
    },
}
