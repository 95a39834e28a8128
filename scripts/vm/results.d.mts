// Types of scripts/vm/results.mjs, for the tests under test/scripts.
export interface TestResult {
  file: string;
  name: string;
  status: 'pass' | 'fail' | 'skip' | 'todo' | 'crash';
  reason?: string;
  signal?: string;
  /** A suite, not a test (see parseResults). */
  isSuite?: true;
}
export interface Leg {
  name: string;
  error?: string;
  tests: TestResult[];
}
export function parseResults(text: string): TestResult[];
export function crashedFiles(results: TestResult[]): string[];
export function replaceFile(results: TestResult[], file: string, rerun: TestResult[]): TestResult[];
export function tally(results: TestResult[]): Record<TestResult['status'], number>;
export function verdict(legs: Leg[]): { ok: boolean; problems: string[] };
export function skippedEverywhere(legs: Leg[]): Array<[string, string[]]>;
export function coveredElsewhere(legs: Leg[]): Array<{ skippedOn: string; name: string; file: string; ranOn: string[] }>;
export function shortFile(file: string): string;
