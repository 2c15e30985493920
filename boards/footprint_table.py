"""Stack and code bytes of the generated library per Cortex-M core, measured with
arm-none-eabi-gcc -O2 over scripts/corpus.py's networks by
scripts/fit_footprint_table.py (which wrote this file): used where no Arm GCC is
installed (mcunet.boards.stack.table_footprint). Per kernel: the deepest stack seen
below it, code bytes = a + b * (length of its rendered C) and the libgcc helpers it
calls; the driver: its frame, and code bytes = a + b * (kernel calls); per helper:
the libgcc member defining it and that member's bytes."""

TABLE = {
    'cortex-m0plus': {
        'driver': {'stack': 192, 'code': (148.0, 23.075)},
        'kernels': {
            'add_s8': {'stack': 116, 'code': (420.0, 0.0000), 'helpers': ('__aeabi_lmul',)},  # 2 seen
            'average_pool_s8': {'stack': 80, 'code': (-11.2, 0.1532), 'helpers': ('__aeabi_idiv', '__aeabi_uidiv')},  # 14 seen
            'concat_s8': {'stack': 44, 'code': (44.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 504, 'code': (-574.8, 0.5705), 'helpers': ('__aeabi_lmul',)},  # 808 seen
            'depthwise_conv_inplace_s8': {'stack': 456, 'code': (-3003.8, 1.9078), 'helpers': ('__aeabi_lmul',)},  # 253 seen
            'depthwise_conv_s8': {'stack': 440, 'code': (-278.4, 0.4078), 'helpers': ('__aeabi_lmul',)},  # 242 seen
            'dequantize_s8_f32': {'stack': 72, 'code': (40.0, 0.0000), 'helpers': ('__aeabi_fmul', '__aeabi_i2f')},  # 2 seen
            'fully_connected_s8': {'stack': 408, 'code': (-428.6, 0.4261), 'helpers': ('__aeabi_d2iz', '__aeabi_dadd', '__aeabi_dcmpge', '__aeabi_dcmple', '__aeabi_dmul', '__aeabi_dsub', '__aeabi_i2d')},  # 66 seen
            'hard_swish_s8': {'stack': 32, 'code': (300.0, 0.0000), 'helpers': ()},  # 2 seen
            'lut_s8': {'stack': 8, 'code': (24.0, 0.0000), 'helpers': ()},  # 2 seen
            'max_pool_s8': {'stack': 64, 'code': (145.9, 0.0000), 'helpers': ()},  # 23 seen
            'mean_s8': {'stack': 368, 'code': (-38.7, 0.3333), 'helpers': ('__aeabi_lmul',)},  # 34 seen
            'mul_s8': {'stack': 92, 'code': (264.0, 0.0000), 'helpers': ('__aeabi_lmul',)},  # 2 seen
            'pad_s8': {'stack': 56, 'code': (72.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 56, 'code': (248.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 488, 'code': (-16906.0, 3.7778), 'helpers': ('__aeabi_lmul',)},  # 66 seen
            '*': {'stack': 504, 'code': (-260.6, 0.4014), 'helpers': ()},  # 1522 seen
        },
        'helpers': {
            '__aeabi_d2iz': ('fixdfsi.o', 120),
            '__aeabi_dadd': ('adddf3.o', 1724),
            '__aeabi_dcmpge': ('_arm_cmpdf2.o', 124),
            '__aeabi_dcmple': ('_arm_cmpdf2.o', 124),
            '__aeabi_dmul': ('muldf3.o', 1416),
            '__aeabi_dsub': ('subdf3.o', 1796),
            '__aeabi_fmul': ('mulsf3.o', 636),
            '__aeabi_i2d': ('floatsidf.o', 96),
            '__aeabi_i2f': ('floatsisf.o', 152),
            '__aeabi_idiv': ('_divsi3.o', 468),
            '__aeabi_lmul': ('_muldi3.o', 92),
            '__aeabi_uidiv': ('_udivsi3.o', 276),
        },
    },
    'cortex-m3': {
        'driver': {'stack': 56, 'code': (133.7, 22.781)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (356.0, 0.0000), 'helpers': ()},  # 2 seen
            'average_pool_s8': {'stack': 64, 'code': (23.8, 0.0927), 'helpers': ()},  # 14 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8': {'stack': 104, 'code': (-411.5, 0.4406), 'helpers': ()},  # 808 seen
            'depthwise_conv_inplace_s8': {'stack': 128, 'code': (-6003.7, 3.5255), 'helpers': ()},  # 253 seen
            'depthwise_conv_s8': {'stack': 104, 'code': (-749.4, 0.6539), 'helpers': ()},  # 242 seen
            'dequantize_s8_f32': {'stack': 24, 'code': (44.0, 0.0000), 'helpers': ('__aeabi_fmul', '__aeabi_i2f')},  # 2 seen
            'fully_connected_s8': {'stack': 156, 'code': (257.9, 0.0000), 'helpers': ('__aeabi_d2iz', '__aeabi_dadd', '__aeabi_dcmpge', '__aeabi_dcmple', '__aeabi_dmul', '__aeabi_dsub', '__aeabi_i2d')},  # 66 seen
            'hard_swish_s8': {'stack': 16, 'code': (260.0, 0.0000), 'helpers': ()},  # 2 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 2 seen
            'max_pool_s8': {'stack': 64, 'code': (112.3, 0.0000), 'helpers': ()},  # 23 seen
            'mean_s8': {'stack': 16, 'code': (-573.8, 0.8889), 'helpers': ()},  # 34 seen
            'mul_s8': {'stack': 48, 'code': (220.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-35032.8, 7.3778), 'helpers': ()},  # 66 seen
            '*': {'stack': 156, 'code': (-145.5, 0.3047), 'helpers': ()},  # 1522 seen
        },
        'helpers': {
            '__aeabi_d2iz': ('_arm_fixdfsi.o', 80),
            '__aeabi_dadd': ('_arm_addsubdf3.o', 888),
            '__aeabi_dcmpge': ('_arm_cmpdf2.o', 272),
            '__aeabi_dcmple': ('_arm_cmpdf2.o', 272),
            '__aeabi_dmul': ('_arm_muldf3.o', 596),
            '__aeabi_dsub': ('_arm_addsubdf3.o', 888),
            '__aeabi_fmul': ('_arm_mulsf3.o', 360),
            '__aeabi_i2d': ('_arm_addsubdf3.o', 888),
            '__aeabi_i2f': ('_arm_addsubsf3.o', 540),
        },
    },
    'cortex-m4': {
        'driver': {'stack': 56, 'code': (97.5, 27.465)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (356.0, 0.0000), 'helpers': ()},  # 2 seen
            'average_pool_s8': {'stack': 64, 'code': (34.3, 0.0833), 'helpers': ()},  # 14 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 252, 'code': (717.7, 0.0904), 'helpers': ()},  # 815 seen
            'depthwise_conv_inplace_s8_dsp': {'stack': 332, 'code': (-343.2, 0.1676), 'helpers': ()},  # 253 seen
            'depthwise_conv_s8': {'stack': 96, 'code': (-616.2, 0.5711), 'helpers': ()},  # 35 seen
            'depthwise_conv_s8_dsp': {'stack': 328, 'code': (316.9, 0.0742), 'helpers': ()},  # 199 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 180, 'code': (485.3, 0.0000), 'helpers': ('__aeabi_d2iz', '__aeabi_dadd', '__aeabi_dcmpge', '__aeabi_dcmple', '__aeabi_dmul', '__aeabi_dsub', '__aeabi_i2d')},  # 66 seen
            'hard_swish_s8': {'stack': 16, 'code': (260.0, 0.0000), 'helpers': ()},  # 2 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 2 seen
            'max_pool_s8': {'stack': 64, 'code': (114.8, 0.0000), 'helpers': ()},  # 23 seen
            'mean_s8': {'stack': 16, 'code': (-573.8, 0.8889), 'helpers': ()},  # 34 seen
            'mul_s8': {'stack': 48, 'code': (224.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-28242.0, 6.0000), 'helpers': ()},  # 66 seen
            '*': {'stack': 332, 'code': (537.0, 0.0803), 'helpers': ()},  # 1521 seen
        },
        'helpers': {
            '__aeabi_d2iz': ('_arm_fixdfsi.o', 80),
            '__aeabi_dadd': ('_arm_addsubdf3.o', 888),
            '__aeabi_dcmpge': ('_arm_cmpdf2.o', 272),
            '__aeabi_dcmple': ('_arm_cmpdf2.o', 272),
            '__aeabi_dmul': ('_arm_muldf3.o', 596),
            '__aeabi_dsub': ('_arm_addsubdf3.o', 888),
            '__aeabi_i2d': ('_arm_addsubdf3.o', 888),
        },
    },
    'cortex-m7': {
        'driver': {'stack': 56, 'code': (96.9, 27.349)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (364.0, 0.0000), 'helpers': ()},  # 2 seen
            'average_pool_s8': {'stack': 64, 'code': (34.6, 0.0769), 'helpers': ()},  # 14 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 252, 'code': (728.3, 0.0910), 'helpers': ()},  # 815 seen
            'depthwise_conv_inplace_s8_dsp': {'stack': 332, 'code': (-356.8, 0.1703), 'helpers': ()},  # 253 seen
            'depthwise_conv_s8': {'stack': 104, 'code': (-639.8, 0.5794), 'helpers': ()},  # 35 seen
            'depthwise_conv_s8_dsp': {'stack': 328, 'code': (367.8, 0.0718), 'helpers': ()},  # 199 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 72, 'code': (402.9, 0.0000), 'helpers': ()},  # 66 seen
            'hard_swish_s8': {'stack': 24, 'code': (260.0, 0.0000), 'helpers': ()},  # 2 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 2 seen
            'max_pool_s8': {'stack': 64, 'code': (111.5, 0.0000), 'helpers': ()},  # 23 seen
            'mean_s8': {'stack': 16, 'code': (-389.3, 0.6667), 'helpers': ()},  # 34 seen
            'mul_s8': {'stack': 56, 'code': (256.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 16, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (1311.3, 0.0000), 'helpers': ()},  # 66 seen
            '*': {'stack': 332, 'code': (533.6, 0.0816), 'helpers': ()},  # 1521 seen
        },
        'helpers': {
        },
    },
    'cortex-m33': {
        'driver': {'stack': 56, 'code': (96.5, 27.474)},
        'kernels': {
            'add_s8': {'stack': 64, 'code': (356.0, 0.0000), 'helpers': ()},  # 2 seen
            'average_pool_s8': {'stack': 64, 'code': (23.8, 0.0927), 'helpers': ()},  # 14 seen
            'concat_s8': {'stack': 12, 'code': (48.0, 0.0000), 'helpers': ()},  # 2 seen
            'conv2d_s8_dsp': {'stack': 256, 'code': (705.6, 0.0920), 'helpers': ()},  # 815 seen
            'depthwise_conv_inplace_s8_dsp': {'stack': 336, 'code': (-348.6, 0.1686), 'helpers': ()},  # 253 seen
            'depthwise_conv_s8': {'stack': 96, 'code': (-295.5, 0.3886), 'helpers': ()},  # 35 seen
            'depthwise_conv_s8_dsp': {'stack': 328, 'code': (315.8, 0.0745), 'helpers': ()},  # 199 seen
            'dequantize_s8_f32': {'stack': 0, 'code': (40.0, 0.0000), 'helpers': ()},  # 2 seen
            'fully_connected_s8_dsp': {'stack': 180, 'code': (485.1, 0.0000), 'helpers': ('__aeabi_d2iz', '__aeabi_dadd', '__aeabi_dcmpge', '__aeabi_dcmple', '__aeabi_dmul', '__aeabi_dsub', '__aeabi_i2d')},  # 66 seen
            'hard_swish_s8': {'stack': 16, 'code': (260.0, 0.0000), 'helpers': ()},  # 2 seen
            'lut_s8': {'stack': 0, 'code': (28.0, 0.0000), 'helpers': ()},  # 2 seen
            'max_pool_s8': {'stack': 64, 'code': (115.0, 0.0000), 'helpers': ()},  # 23 seen
            'mean_s8': {'stack': 16, 'code': (-573.8, 0.8889), 'helpers': ()},  # 34 seen
            'mul_s8': {'stack': 48, 'code': (220.0, 0.0000), 'helpers': ()},  # 2 seen
            'pad_s8': {'stack': 12, 'code': (80.0, 0.0000), 'helpers': ()},  # 2 seen
            'requantize_s8': {'stack': 12, 'code': (124.0, 0.0000), 'helpers': ()},  # 2 seen
            'softmax_s8': {'stack': 80, 'code': (-31746.8, 6.7111), 'helpers': ()},  # 66 seen
            '*': {'stack': 336, 'code': (534.0, 0.0807), 'helpers': ()},  # 1521 seen
        },
        'helpers': {
            '__aeabi_d2iz': ('_arm_fixdfsi.o', 80),
            '__aeabi_dadd': ('_arm_addsubdf3.o', 888),
            '__aeabi_dcmpge': ('_arm_cmpdf2.o', 272),
            '__aeabi_dcmple': ('_arm_cmpdf2.o', 272),
            '__aeabi_dmul': ('_arm_muldf3.o', 596),
            '__aeabi_dsub': ('_arm_addsubdf3.o', 888),
            '__aeabi_i2d': ('_arm_addsubdf3.o', 888),
        },
    },
}
