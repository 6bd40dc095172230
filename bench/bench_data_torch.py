# bench_data_torch.py — the torchvision side of bench/bench_data.c: the same decode +
# RandomResizedCrop(224) + RandomHorizontalFlip + ColorJitter(.4,.4,.4,.1) + ToTensor over the files
# of one folder, DataLoader batch 32 with 1 and 2 persistent workers (one torch thread each), timed on
# the second epoch. Run: /usr/bin/python3 bench/bench_data_torch.py FOLDER [WORKERS...]
import os
import resource
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class Files(Dataset):
    def __init__(self, folder, tf):
        self.paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if not f.startswith("."))
        self.tf = tf

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.tf(im.convert("RGB"))


def one_thread(_):
    torch.set_num_threads(1)


def main():
    folder = sys.argv[1]
    torch.set_num_threads(1)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(0.4, 0.4, 0.4, 0.1),
        transforms.ToTensor(),
    ])
    ds = Files(folder, tf)
    for workers in [int(a) for a in sys.argv[2:]] or [1, 2]:
        dl = DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=False, worker_init_fn=one_thread, prefetch_factor=2)
        ips, cpu_ms = 0.0, 0.0
        for epoch in range(2):
            r0 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            t0, n = time.perf_counter(), 0
            for x in dl:
                n += x.shape[0]
            ips = n / (time.perf_counter() - t0)
            r1 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1))
            cpu_ms = 1000 * cpu / n
        print(f"torchvision workers={workers}: {ips:7.1f} images/s, {cpu_ms:6.2f} CPU ms/image", flush=True)
        del dl


if __name__ == "__main__":
    main()
