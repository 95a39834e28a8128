// Types of scripts/vm/initramfs.mjs, for the tests under test/scripts.
export const ROOT_TAG: string;
export const SHARE_TAG: string;
export const GUEST_SHARE: string;
export const GUEST_TMPFS: string[];
export function hiddenInGuest(paths: string[]): string[];
export function initScript(moduleNames: string[], keep?: string[]): string;
export function buildInitramfs(modules: Array<{ name: string; bytes: Buffer }>, busybox?: string, keep?: string[]): Buffer;
export function guestScript(opts: { cwd: string; command: string; env: Record<string, string>; nofile: number; resultDir: string }): string;
