/* metrics.h: placeholder. */
