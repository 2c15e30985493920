"""Stack and code bytes of the generated library per Cortex-M core, measured with
arm-none-eabi-gcc -O2 over scripts/corpus.py's networks by
scripts/fit_footprint_table.py (which wrote this file): used where no Arm GCC is
installed (mcunet.boards.stack.table_footprint). Per kernel: the deepest stack seen
below it, code bytes = a + b * (length of its rendered C) and the libgcc helpers it
calls; the driver: its frame, and code bytes = a + b * (kernel calls); per helper:
the libgcc member defining it and that member's bytes."""

TABLE = {
    'cortex-m0plus': {
        'driver': {'stack': 160, 'code': (158.9, 24.085)},
        'kernels': {
            'add_s8': {'stack': 116, 'code': (266.1, 0.1400), 'helpers': ('__aeabi_lmul',)},  # 28 seen
            'average_pool_s8': {'stack': 80, 'code': (-11.7, 0.1542), 'helpers': ('__aeabi_idiv', '__aeabi_uidiv')},  # 20 seen
            'concat_s8': {'stack': 44, 'code': (44.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 196, 'code': (-540.6, 0.5283), 'helpers': ('__aeabi_lmul',)},  # 1174 seen
            'depthwise_conv_inplace_s8': {'stack': 156, 'code': (-2368.1, 1.5156), 'helpers': ('__aeabi_lmul',)},  # 446 seen
            'depthwise_conv_s8': {'stack': 140, 'code': (-411.9, 0.4696), 'helpers': ('__aeabi_lmul',)},  # 330 seen
            'dequantize_s8_f32': {'stack': 72, 'code': (40.0, 0.0000), 'helpers': ('__aeabi_fmul', '__aeabi_i2f')},  # 2 seen
            'fully_connected_s8': {'stack': 148, 'code': (-336.8, 0.5050), 'helpers': ('__aeabi_lmul', '__clzsi2')},  # 98 seen
            'lut_s8': {'stack': 8, 'code': (24.0, 0.0000), 'helpers': ()},  # 4 seen
            'max_pool_s8': {'stack': 64, 'code': (153.9, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 80, 'code': (-1832.7, 2.4545), 'helpers': ('__aeabi_lmul',)},  # 50 seen
            'mul_s8': {'stack': 92, 'code': (264.0, 0.0000), 'helpers': ('__aeabi_lmul',)},  # 2 seen
            'pad_s8': {'stack': 56, 'code': (72.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 56, 'code': (248.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 188, 'code': (-17578.6, 3.8915), 'helpers': ('__aeabi_lmul',)},  # 98 seen
            '*': {'stack': 196, 'code': (-246.4, 0.3888), 'helpers': ()},  # 2291 seen
        },
        'helpers': {
            '__aeabi_fmul': ('mulsf3.o', 636),
            '__aeabi_i2f': ('floatsisf.o', 152),
            '__aeabi_idiv': ('_divsi3.o', 468),
            '__aeabi_lmul': ('_muldi3.o', 92),
            '__aeabi_uidiv': ('_udivsi3.o', 276),
            '__clzsi2': ('_clzsi2.o', 60),
        },
    },
    'cortex-m3': {
        'driver': {'stack': 64, 'code': (158.2, 22.260)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (223.3, 0.1207), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (43.2, 0.0702), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 112, 'code': (-342.1, 0.3836), 'helpers': ()},  # 1174 seen
            'depthwise_conv_inplace_s8': {'stack': 128, 'code': (-5216.2, 3.0008), 'helpers': ()},  # 446 seen
            'depthwise_conv_s8': {'stack': 104, 'code': (213.4, 0.1051), 'helpers': ()},  # 330 seen
            'dequantize_s8_f32': {'stack': 24, 'code': (44.0, 0.0000), 'helpers': ('__aeabi_fmul', '__aeabi_i2f')},  # 2 seen
            'fully_connected_s8': {'stack': 80, 'code': (-464.1, 0.5340), 'helpers': ()},  # 98 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 4 seen
            'max_pool_s8': {'stack': 64, 'code': (113.8, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-318.3, 0.5714), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (220.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-35410.5, 7.4109), 'helpers': ()},  # 98 seen
            '*': {'stack': 128, 'code': (-133.5, 0.2947), 'helpers': ()},  # 2291 seen
        },
        'helpers': {
            '__aeabi_fmul': ('_arm_mulsf3.o', 360),
            '__aeabi_i2f': ('_arm_addsubsf3.o', 540),
        },
    },
    'cortex-m4': {
        'driver': {'stack': 56, 'code': (124.1, 27.513)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (222.5, 0.1213), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (51.6, 0.0627), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 252, 'code': (511.5, 0.0561), 'helpers': ()},  # stack: 1082 seen; code refitted to 153 after the kernel's change
            'conv2d_s8_dsp_wide': {'stack': 252, 'code': (581.5, 0.0507), 'helpers': ()},  # code fitted on 95 (lean: 17) of them in scripts/corpus.py's networks compiled with room in flash; stack as conv2d_s8_dsp's (128-136 seen)
            'conv2d_s8_dsp_wide_lean': {'stack': 252, 'code': (575.1, 0.0498), 'helpers': ()},  # as conv2d_s8_dsp_wide's
            'depthwise_conv_inplace_s8_dsp': {'stack': 332, 'code': (-387.7, 0.1747), 'helpers': ()},  # 398 seen
            'depthwise_conv_s8': {'stack': 96, 'code': (-559.0, 0.5243), 'helpers': ()},  # 28 seen
            'depthwise_conv_s8_dsp': {'stack': 384, 'code': (338.2, 0.0731), 'helpers': ()},  # 243 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 104, 'code': (-713.8, 0.6430), 'helpers': ()},  # 17 seen
            'fully_connected_s8_dsp_col': {'stack': 96, 'code': (-1075.2, 0.7118), 'helpers': ()},  # 81 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 4 seen
            'max_pool_s8': {'stack': 64, 'code': (115.6, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-318.3, 0.5714), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (224.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-28416.0, 6.0000), 'helpers': ()},  # 98 seen
            '*': {'stack': 384, 'code': (623.4, 0.0717), 'helpers': ()},  # 2092 seen
        },
        'helpers': {
        },
    },
    'cortex-m7': {
        'driver': {'stack': 56, 'code': (125.0, 27.471)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (196.8, 0.1521), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (50.5, 0.0581), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 252, 'code': (518.9, 0.0560), 'helpers': ()},  # stack: 1082 seen; code refitted to 153 after the kernel's change
            'conv2d_s8_dsp_wide': {'stack': 252, 'code': (577.8, 0.0511), 'helpers': ()},  # code fitted on 95 (lean: 17) of them in scripts/corpus.py's networks compiled with room in flash; stack as conv2d_s8_dsp's (128-136 seen)
            'conv2d_s8_dsp_wide_lean': {'stack': 252, 'code': (564.6, 0.0505), 'helpers': ()},  # as conv2d_s8_dsp_wide's
            'depthwise_conv_inplace_s8_dsp': {'stack': 332, 'code': (-400.7, 0.1773), 'helpers': ()},  # 398 seen
            'depthwise_conv_s8': {'stack': 104, 'code': (-178.1, 0.3092), 'helpers': ()},  # 28 seen
            'depthwise_conv_s8_dsp': {'stack': 328, 'code': (390.3, 0.0709), 'helpers': ()},  # 243 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 112, 'code': (-725.4, 0.6274), 'helpers': ()},  # 17 seen
            'fully_connected_s8_dsp_col': {'stack': 88, 'code': (-1054.3, 0.6984), 'helpers': ()},  # 81 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 4 seen
            'max_pool_s8': {'stack': 64, 'code': (112.0, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-197.7, 0.4286), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 56, 'code': (256.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 16, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (1312.3, 0.0000), 'helpers': ()},  # 98 seen
            '*': {'stack': 332, 'code': (626.8, 0.0726), 'helpers': ()},  # 2092 seen
        },
        'helpers': {
        },
    },
    'cortex-m33': {
        'driver': {'stack': 56, 'code': (124.3, 27.492)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (222.1, 0.1216), 'helpers': ()},  # 28 seen
            'average_pool_s8': {'stack': 64, 'code': (42.0, 0.0711), 'helpers': ()},  # 20 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 256, 'code': (511.4, 0.0562), 'helpers': ()},  # stack: 1082 seen; code refitted to 153 after the kernel's change
            'conv2d_s8_dsp_wide': {'stack': 256, 'code': (582.0, 0.0508), 'helpers': ()},  # code fitted on 95 (lean: 17) of them in scripts/corpus.py's networks compiled with room in flash; stack as conv2d_s8_dsp's (128-136 seen)
            'conv2d_s8_dsp_wide_lean': {'stack': 256, 'code': (575.1, 0.0499), 'helpers': ()},  # as conv2d_s8_dsp_wide's
            'depthwise_conv_inplace_s8_dsp': {'stack': 336, 'code': (-394.3, 0.1760), 'helpers': ()},  # 398 seen
            'depthwise_conv_s8': {'stack': 96, 'code': (-188.5, 0.3174), 'helpers': ()},  # 28 seen
            'depthwise_conv_s8_dsp': {'stack': 384, 'code': (341.2, 0.0732), 'helpers': ()},  # 243 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 104, 'code': (-710.9, 0.6418), 'helpers': ()},  # 17 seen
            'fully_connected_s8_dsp_col': {'stack': 96, 'code': (-1075.7, 0.7119), 'helpers': ()},  # 81 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 4 seen
            'max_pool_s8': {'stack': 64, 'code': (115.4, 0.0000), 'helpers': ()},  # 31 seen
            'mean_s8': {'stack': 16, 'code': (-318.3, 0.5714), 'helpers': ()},  # 50 seen
            'mul_s8': {'stack': 48, 'code': (220.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-32105.2, 6.7442), 'helpers': ()},  # 98 seen
            '*': {'stack': 384, 'code': (620.5, 0.0721), 'helpers': ()},  # 2092 seen
        },
        'helpers': {
        },
    },
}
