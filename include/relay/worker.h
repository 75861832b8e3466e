/* worker.h: placeholder. */
