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
spans of 40 networks on the M3, M4, M7 and M33.
Refitted with --only: conv2d_s8_dsp, depthwise_conv_inplace_s8_dsp,
depthwise_conv_s8_dsp, to 2109 spans of 28 networks.
Refitted with --only: conv2d_s8_dsp_wide, to 435 spans of 11 networks.
Refitted with --only: depthwise_conv_inplace_s8_dsp, depthwise_conv_s8_dsp, to 316 spans
of 23 networks on the M4 and M7 (blocks of four outputs, wider bands; the M33's rows as
before)."""

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
        'conv2d_s8_dsp': {'calls': 2541.83, 'macs': 0.379041, 'macs_per_block': 2.19993, 'out': 6.02078, 'pixels': 6.98447, 'row_taps': 3.53362, 'rq_general': 4.22989, 'fused': 24.6491},
        'depthwise_conv_inplace_s8_dsp': {'macs': 0.933606, 'in': 5.34033, 'channels': 43.1483, 'plane_area': 3.54557, 'pair_out': 12.9415, 'channel_taps': 3.32858, 'row_taps': 2.41864},
        'depthwise_conv_s8': {'macs': 2.89452, 'valid_taps': 2.48469, 'row_taps': 37.6776},
        'depthwise_conv_s8_dsp': {'macs': 1.82155, 'in': 2.80005, 'channels': 228.641, 'valid_taps': 0.203506},
        'fully_connected_s8_dsp': {'calls': 37.2553, 'macs': 1.34226, 'out': 20.577, 'in': 2.18227},
        'max_pool_s8': {'calls': 79.3936, 'pixels': 5.74104, 'taps': 4.06775},
        'mean_s8': {'calls': 33.5256, 'out': 28.3861, 'in': 3.89987},
        'mul_s8': {'calls': 1484},
        'softmax_s8': {'calls': 421.568, 'out': 260.043},
        'fully_connected_s8_dsp_col': {'calls': 5.86186, 'macs': 1.30274, 'out': 19.6244, 'in': 4.07298},
        'conv2d_s8_dsp_wide': {'calls': 1150.1, 'macs': 0.90936, 'out': 5.25395, 'in': 0.926506, 'pixels': 20.1433, 'valid_taps': 0.959753, 'rq_general': 12.0952, 'fused': 29.685},
    },
    'cortex-m7': {
        'add_s8': {'calls': 3395},
        'average_pool_s8': {'calls': 255.233, 'valid_taps': 4.35576},
        'conv2d_s8_dsp': {'calls': 2563.62, 'macs': 0.383459, 'macs_per_block': 2.19877, 'out': 4.92885, 'pixels': 11.6734, 'row_taps': 4.04685, 'rq_general': 4.62427, 'fused': 24.548},
        'depthwise_conv_inplace_s8_dsp': {'macs': 0.933582, 'in': 5.34021, 'channels': 43.1458, 'plane_area': 3.55034, 'pair_out': 12.942, 'channel_taps': 3.3286, 'row_taps': 2.41876},
        'depthwise_conv_s8': {'macs': 2.46469, 'valid_taps': 2.47845, 'row_taps': 41.0539},
        'depthwise_conv_s8_dsp': {'macs': 1.80575, 'in': 2.79511, 'channels': 230.657, 'valid_taps': 0.220883},
        'fully_connected_s8_dsp': {'calls': 37.4515, 'macs': 1.34166, 'out': 20.6519, 'in': 2.18841},
        'max_pool_s8': {'calls': 78.4376, 'pixels': 5.75771, 'taps': 4.06833},
        'mean_s8': {'calls': 32.0403, 'out': 27.2067, 'in': 3.91704},
        'mul_s8': {'calls': 1475},
        'requantize_s8': {'calls': 342},
        'softmax_s8': {'calls': 432.374, 'out': 259.467},
        'fully_connected_s8_dsp_col': {'calls': 5.29994, 'macs': 1.30291, 'out': 19.6177, 'in': 4.08058},
        'conv2d_s8_dsp_wide': {'calls': 1151.48, 'macs': 0.904831, 'out': 2.53105, 'pixels': 17.2834, 'im2col': 1.10823, 'row_taps': 3.61675, 'rq_general': 12.2536, 'fused': 30.147},
    },
    'cortex-m33': {
        'add_s8': {'calls': 72.6826, 'out': 58.4336},
        'average_pool_s8': {'calls': 177.096, 'valid_taps': 4.27614},
        'conv2d_s8_dsp': {'calls': 2541.81, 'macs': 0.378926, 'macs_per_block': 2.20026, 'out': 6.0212, 'pixels': 6.98718, 'row_taps': 3.5335, 'rq_general': 4.22994, 'fused': 24.6489},
        'depthwise_conv_inplace_s8_dsp': {'macs': 1.14102, 'in': 6.22645, 'channels': 51.8938, 'plane_area': 6.76728, 'pair_out': 7.34887, 'tap_groups': 1.64369, 'channel_taps': 2.78389},
        'depthwise_conv_s8': {'macs': 2.96961, 'valid_taps': 2.42962, 'row_taps': 38.6706},
        'depthwise_conv_s8_dsp': {'macs': 2.38236, 'in': 2.34794, 'channels': 88.2675},
        'fully_connected_s8_dsp': {'calls': 37.1629, 'macs': 1.34203, 'out': 20.6377, 'in': 2.18376},
        'fully_connected_s8_dsp_col': {'calls': 5.82917, 'macs': 1.30169, 'out': 19.6492, 'in': 4.07234},
        'max_pool_s8': {'calls': 69.2464, 'pixels': 5.87539, 'taps': 4.06851},
        'mean_s8': {'calls': 31.1969, 'out': 28.2865, 'in': 3.92254},
        'mul_s8': {'calls': 1484},
        'softmax_s8': {'calls': 345.979, 'out': 269.229},
        'conv2d_s8_dsp_wide': {'calls': 1150.09, 'macs': 0.909403, 'out': 5.25227, 'in': 0.925765, 'pixels': 20.1709, 'valid_taps': 0.959537, 'rq_general': 12.0959, 'fused': 29.6853},
    },
}
