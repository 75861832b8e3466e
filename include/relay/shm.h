/* shm.h: placeholder. */
