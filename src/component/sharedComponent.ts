/**
 * One instance per config for components used by several pipelines/signals
 * (the collector's `sharedcomponent`): the ebpf receiver attaches to the
 * kernel once whether it feeds a metrics pipeline, a logs pipeline or both.
 */
export class SharedComponents<C extends object, T> {
  private readonly instances = new WeakMap<C, T>();

  getOrCreate(config: C, create: () => T): T {
    let instance = this.instances.get(config);
    if (instance === undefined) {
      instance = create();
      this.instances.set(config, instance);
    }
    return instance;
  }
}
