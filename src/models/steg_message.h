/* steg_message.h — bytes as a steganography secret image and back: a low-contrast pattern of 4x4 cells
 * carrying a rate-1/2 convolutional code (constraint length 7, the CCSDS/NASA polynomials 171 and 133
 * octal) with a CRC-32, interleaved over the whole picture, repeated, and decoded by soft Viterbi. */
#ifndef MF_STEG_MESSAGE_H
#define MF_STEG_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#define STEG_MSG_CELL 4       /* each channel bit is a STEG_MSG_CELL x STEG_MSG_CELL block of one channel */
#define STEG_MSG_REPEAT 2     /* copies of every coded bit at the stated capacity (fewer never) */
#define STEG_MSG_AMPLITUDE 0.1f /* cell value 0.5 +- this: the secret's contrast, which the stego pays for */

/* Cell positions of a w x h secret: 3 channels x (w/4) x (h/4). */
size_t steg_msg_positions(int w, int h);
/* The longest message (bytes) a w x h cover carries with STEG_MSG_REPEAT copies of each coded bit; 0
 * when the picture is too small even for the length. */
long steg_msg_capacity(int w, int h);
/* The longest message this cover (planar [3,h,w]) carries: as steg_msg_capacity, with each cell counted
 * at the weight the decoder gives it where the cover is clipped (a pure white, black or saturated-colour
 * area carries little: the stego cannot move past 0 or 1 there). At most steg_msg_capacity(w, h). */
long steg_msg_cover_capacity(const float *cover, int w, int h);
/* Draws len bytes as a planar [3,h,w] secret image in img (len <= steg_msg_capacity). 0, or -1 when the
 * message is too long or host memory ran out. */
int steg_msg_encode(const uint8_t *msg, size_t len, int w, int h, float *img);
/* Reads a message back from a recovered planar [3,h,w] secret: returns its length with *msg malloc'd
 * (NUL-terminated), -1 when the stored length is impossible for this size, -2 when the CRC does not
 * match (the bytes are still returned in *msg), -3 when host memory ran out. stego (planar [3,h,w], the
 * 8-bit stego the secret was revealed from; NULL: not known) lets the decoder trust cells less where the
 * stego is clipped to 0 or 1: there the network could not put what it hid, and the reading is biased. */
long steg_msg_decode(const float *img, const float *stego, int w, int h, uint8_t **msg);
/* Share of cell positions whose hard reading (cell mean above or below 0.5) equals what steg_msg_encode
 * drew for this message: the channel's raw bit accuracy before the code corrects anything. */
double steg_msg_bit_accuracy(const float *img, const uint8_t *msg, size_t len, int w, int h);

#endif
