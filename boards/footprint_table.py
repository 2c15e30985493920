"""Stack and code bytes of the generated library per Cortex-M core, measured with
arm-none-eabi-gcc -O2 over scripts/corpus.py's networks by
scripts/fit_footprint_table.py (which wrote this file): used where no Arm GCC is
installed (mcunet.boards.stack.table_footprint) and for the architecture search's
code estimate (mcunet.boards.stack.table_code_bytes; 'host': the host's C compiler,
code only). Per kernel: the deepest stack seen below it, code bytes = a + b *
(length of its rendered C) and the libgcc helpers it calls; the driver: its frame,
and code bytes = a + b * (kernel calls); per helper: the libgcc member defining it
and that member's bytes."""

TABLE = {
    'cortex-m0plus': {
        'driver': {'stack': 160, 'code': (164.1, 24.104)},
        'kernels': {
            'add_s8': {'stack': 100, 'code': (76.3, 0.1419), 'helpers': ('__aeabi_lmul',)},  # 28 seen
            'average_pool_s8': {'stack': 80, 'code': (-11.7, 0.1542), 'helpers': ('__aeabi_idiv', '__aeabi_uidiv')},  # 20 seen
            'concat_s8': {'stack': 44, 'code': (44.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 180, 'code': (-17.7, 0.2351), 'helpers': ('__aeabi_lmul',)},  # 1174 seen
            'depthwise_conv_inplace_s8': {'stack': 156, 'code': (-2368.1, 1.5156), 'helpers': ('__aeabi_lmul',)},  # 446 seen
            'depthwise_conv_s8': {'stack': 140, 'code': (-411.9, 0.4696), 'helpers': ('__aeabi_lmul',)},  # 330 seen
            'dequantize_s8_f32': {'stack': 72, 'code': (40.0, 0.0000), 'helpers': ('__aeabi_fmul', '__aeabi_i2f')},  # 2 seen
            'fully_connected_s8': {'stack': 148, 'code': (-14.6, 0.2811), 'helpers': ('__aeabi_lmul',)},  # 98 seen
            'lut_s8': {'stack': 52, 'code': (84.0, 0.0000), 'helpers': ()},  # 6 seen
            'max_pool_s8': {'stack': 64, 'code': (153.9, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 80, 'code': (-1832.7, 2.4545), 'helpers': ('__aeabi_lmul',)},  # 50 seen
            'mul_s8': {'stack': 84, 'code': (192.0, 0.0000), 'helpers': ('__aeabi_lmul',)},  # 2 seen
            'pad_s8': {'stack': 56, 'code': (72.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 56, 'code': (248.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 196, 'code': (-20448.2, 4.4697), 'helpers': ('__aeabi_lmul',)},  # 98 seen
            '*': {'stack': 196, 'code': (-247.1, 0.3775), 'helpers': ()},  # 2291 seen
        },
        'helpers': {
            '__aeabi_fmul': ('mulsf3.o', 636),
            '__aeabi_i2f': ('floatsisf.o', 152),
            '__aeabi_idiv': ('_divsi3.o', 468),
            '__aeabi_lmul': ('_muldi3.o', 92),
            '__aeabi_uidiv': ('_udivsi3.o', 276),
        },
    },
    'cortex-m3': {
        'driver': {'stack': 64, 'code': (163.4, 22.279)},
        'kernels': {
            'add_s8': {'stack': 56, 'code': (-3.9, 0.1872), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (43.2, 0.0702), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 112, 'code': (129.4, 0.1193), 'helpers': ()},  # 1174 seen
            'depthwise_conv_inplace_s8': {'stack': 128, 'code': (-5216.2, 3.0008), 'helpers': ()},  # 446 seen
            'depthwise_conv_s8': {'stack': 104, 'code': (213.4, 0.1051), 'helpers': ()},  # 330 seen
            'dequantize_s8_f32': {'stack': 24, 'code': (44.0, 0.0000), 'helpers': ('__aeabi_fmul', '__aeabi_i2f')},  # 2 seen
            'fully_connected_s8': {'stack': 112, 'code': (-112.8, 0.3043), 'helpers': ()},  # 98 seen
            'lut_s8': {'stack': 12, 'code': (64.0, 0.0000), 'helpers': ()},  # 6 seen
            'max_pool_s8': {'stack': 64, 'code': (113.8, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-318.3, 0.5714), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (156.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-21495.8, 4.6061), 'helpers': ()},  # 98 seen
            '*': {'stack': 128, 'code': (-140.3, 0.2883), 'helpers': ()},  # 2291 seen
        },
        'helpers': {
            '__aeabi_fmul': ('_arm_mulsf3.o', 360),
            '__aeabi_i2f': ('_arm_addsubsf3.o', 540),
        },
    },
    'cortex-m4': {
        'driver': {'stack': 56, 'code': (139.9, 27.114)},
        'kernels': {
            'add_s8': {'stack': 56, 'code': (15.9, 0.1648), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (51.6, 0.0627), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 176, 'code': (299.0, 0.0620), 'helpers': ()},  # 969 seen
            'conv2d_s8_dsp_lean': {'stack': 136, 'code': (215.7, 0.0666), 'helpers': ()},  # 140 seen
            'conv2d_s8_dsp_wide': {'stack': 252, 'code': (581.5, 0.0507), 'helpers': ()},  # code fitted on 95 (lean: 17) of them in scripts/corpus.py's networks compiled with room in flash; stack as conv2d_s8_dsp's (128-136 seen)
            'conv2d_s8_dsp_wide_lean': {'stack': 252, 'code': (575.1, 0.0498), 'helpers': ()},  # as conv2d_s8_dsp_wide's
            'depthwise_conv_inplace_s8_dsp': {'stack': 252, 'code': (122.9, 0.0661), 'helpers': ()},  # 402 seen
            'depthwise_conv_s8': {'stack': 80, 'code': (396.0, 0.0000), 'helpers': ()},  # 2 seen
            'depthwise_conv_s8_dsp': {'stack': 372, 'code': (234.7, 0.0629), 'helpers': ()},  # 289 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 164, 'code': (208.1, 0.0993), 'helpers': ()},  # 17 seen
            'fully_connected_s8_dsp_col': {'stack': 140, 'code': (-38.4, 0.1645), 'helpers': ()},  # 81 seen
            'lut_s8': {'stack': 12, 'code': (64.0, 0.0000), 'helpers': ()},  # 6 seen
            'max_pool_s8': {'stack': 64, 'code': (115.6, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-318.3, 0.5714), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (156.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-19621.9, 4.2273), 'helpers': ()},  # 98 seen
            '*': {'stack': 372, 'code': (321.1, 0.0609), 'helpers': ()},  # 2145 seen
        },
        'helpers': {
        },
    },
    'cortex-m7': {
        'driver': {'stack': 56, 'code': (140.6, 27.079)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (-3.4, 0.1828), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (50.5, 0.0581), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 176, 'code': (302.9, 0.0621), 'helpers': ()},  # 969 seen
            'conv2d_s8_dsp_lean': {'stack': 136, 'code': (216.3, 0.0669), 'helpers': ()},  # 140 seen
            'conv2d_s8_dsp_wide': {'stack': 252, 'code': (577.8, 0.0511), 'helpers': ()},  # code fitted on 95 (lean: 17) of them in scripts/corpus.py's networks compiled with room in flash; stack as conv2d_s8_dsp's (128-136 seen)
            'conv2d_s8_dsp_wide_lean': {'stack': 252, 'code': (564.6, 0.0505), 'helpers': ()},  # as conv2d_s8_dsp_wide's
            'depthwise_conv_inplace_s8_dsp': {'stack': 252, 'code': (121.6, 0.0663), 'helpers': ()},  # 402 seen
            'depthwise_conv_s8': {'stack': 80, 'code': (384.0, 0.0000), 'helpers': ()},  # 2 seen
            'depthwise_conv_s8_dsp': {'stack': 372, 'code': (231.3, 0.0633), 'helpers': ()},  # 289 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 168, 'code': (210.1, 0.0997), 'helpers': ()},  # 17 seen
            'fully_connected_s8_dsp_col': {'stack': 144, 'code': (-34.8, 0.1647), 'helpers': ()},  # 81 seen
            'lut_s8': {'stack': 16, 'code': (68.0, 0.0000), 'helpers': ()},  # 6 seen
            'max_pool_s8': {'stack': 64, 'code': (112.3, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-197.7, 0.4286), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (156.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 16, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (1326.0, 0.0000), 'helpers': ()},  # 98 seen
            '*': {'stack': 372, 'code': (321.1, 0.0611), 'helpers': ()},  # 2145 seen
        },
        'helpers': {
        },
    },
    'cortex-m33': {
        'driver': {'stack': 56, 'code': (141.0, 27.050)},
        'kernels': {
            'add_s8': {'stack': 56, 'code': (16.8, 0.1640), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (42.0, 0.0711), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 176, 'code': (305.4, 0.0619), 'helpers': ()},  # 969 seen
            'conv2d_s8_dsp_lean': {'stack': 136, 'code': (213.7, 0.0669), 'helpers': ()},  # 140 seen
            'conv2d_s8_dsp_wide': {'stack': 256, 'code': (582.0, 0.0508), 'helpers': ()},  # code fitted on 95 (lean: 17) of them in scripts/corpus.py's networks compiled with room in flash; stack as conv2d_s8_dsp's (128-136 seen)
            'conv2d_s8_dsp_wide_lean': {'stack': 256, 'code': (575.1, 0.0499), 'helpers': ()},  # as conv2d_s8_dsp_wide's
            'depthwise_conv_inplace_s8_dsp': {'stack': 256, 'code': (123.5, 0.0662), 'helpers': ()},  # 402 seen
            'depthwise_conv_s8': {'stack': 80, 'code': (408.0, 0.0000), 'helpers': ()},  # 2 seen
            'depthwise_conv_s8_dsp': {'stack': 376, 'code': (232.0, 0.0632), 'helpers': ()},  # 289 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 164, 'code': (208.1, 0.0993), 'helpers': ()},  # 17 seen
            'fully_connected_s8_dsp_col': {'stack': 140, 'code': (-39.9, 0.1652), 'helpers': ()},  # 81 seen
            'lut_s8': {'stack': 12, 'code': (64.0, 0.0000), 'helpers': ()},  # 6 seen
            'max_pool_s8': {'stack': 64, 'code': (115.6, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-318.3, 0.5714), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (156.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-19167.5, 4.1364), 'helpers': ()},  # 98 seen
            '*': {'stack': 376, 'code': (323.5, 0.0609), 'helpers': ()},  # 2145 seen
        },
        'helpers': {
        },
    },
    'host': {
        'driver': {'stack': 0, 'code': (172.7, 37.784)},
        'kernels': {
            'add_s8': {'stack': 0, 'code': (54.3, 0.2563), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 0, 'code': (7.3, 0.2199), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 0, 'code': (97.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 0, 'code': (245.7, 0.2653), 'helpers': ()},  # 1174 seen
            'depthwise_conv_inplace_s8': {'stack': 0, 'code': (0.0, 0.4465), 'helpers': ()},  # 446 seen
            'depthwise_conv_s8': {'stack': 0, 'code': (238.1, 0.2244), 'helpers': ()},  # 330 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (204.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8': {'stack': 0, 'code': (83.6, 0.3095), 'helpers': ()},  # 98 seen
            'lut_s8': {'stack': 0, 'code': (149.0, 0.0000), 'helpers': ()},  # 6 seen
            'max_pool_s8': {'stack': 0, 'code': (0.0, 0.2922), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 0, 'code': (0.0, 0.4106), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 0, 'code': (271.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 0, 'code': (128.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 0, 'code': (167.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 0, 'code': (0.0, 0.3204), 'helpers': ()},  # 98 seen
            '*': {'stack': 0, 'code': (171.4, 0.2996), 'helpers': ()},  # 2291 seen
        },
        'helpers': {
        },
    },
}
