/**
 * Deadlines stretch 5x under CPU emulation: the kernel matrix's TCG guests
 * (scripts/kernel-matrix.mjs) set KMESH_TEST_EMULATED=1, and there the
 * agent's start-up alone takes 12-20 s (0.8 s on the host), a node child
 * 2-3 s, and one host thread emulates the guest's two vCPUs for everything
 * a test starts, on a shared and noisy machine. Only how long a wait may take changes, never what it
 * waits for.
 */
export const DEADLINE_SCALE = process.env.KMESH_TEST_EMULATED === '1' ? 5 : 1;

/** `ms` as a deadline: stretched under CPU emulation. */
export const deadlineMs = (ms: number): number => ms * DEADLINE_SCALE;
