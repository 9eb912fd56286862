"""Seeded training data: the same batches, in the same order, with the same augmentation, after a resume.

Augmentation randomness is seeded per sample from (seed, epoch, index) and shuffling per epoch from
(seed, epoch), so batch ``N`` of a run depends only on the seed, the batch size and the number of ranks.
A file that cannot be loaded, or a label outside the classes, travels through the loader as a message
and becomes a one-line UserError naming the file in :func:`unpack_batch`; the label check,
:func:`~paddle_psp.data.datasets.label_problem`, is shared with evaluation.
"""
import os
import random
import signal

import numpy as np
import paddle

from paddle_psp.core.errors import UserError, one_line
from paddle_psp.data.datasets import label_problem


def derive_seed(*parts):
    """A 32-bit seed from integers ``parts`` (independent streams for different tuples)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def make_loader(dataset, batch_size, nranks, rank, seed, num_classes, ignore_index, start_batch=0,
                num_workers=0):
    """A DataLoader of endless seeded batches of this rank's shard, starting after ``start_batch`` batches.

    Args:
        dataset (paddle.io.Dataset): A PaddleSeg training dataset (with ``file_list``).
        batch_size (int): Images per rank and batch.
        nranks (int): Number of data-parallel ranks.
        rank (int): This rank.
        seed (int): Shuffling and augmentation seed.
        num_classes (int): Labels must lie in [0, num_classes) or be ``ignore_index``.
        ignore_index (int): The label value that is not scored.
        start_batch (int, optional): Batches already consumed (the resumed iteration). Default: 0.
        num_workers (int, optional): Data loading processes. Default: 0.

    Returns:
        paddle.io.DataLoader: Yields (images, labels, indices, failure); its ``batch_sampler`` is the
        :class:`EpochShardSampler`. Read batches with :func:`unpack_batch`.
    """
    sampler = EpochShardSampler(dataset, batch_size, nranks, rank, seed, start_batch=start_batch)
    collate = BatchCollator(dataset.file_list, num_classes, ignore_index)
    return paddle.io.DataLoader(SeededSamples(dataset, seed), batch_sampler=sampler, collate_fn=collate,
                                num_workers=num_workers, return_list=True, worker_init_fn=die_with_parent)


def unpack_batch(batch):
    """(images, labels, sample indices) of a batch of :func:`make_loader`; a UserError naming the file when
    one of the batch could not be used."""
    images, labels, indices, failure = batch
    failure = failure.numpy()
    if failure[0] != 0:
        raise UserError(bytes(failure).decode('utf-8', 'replace'))
    return images, labels, indices.numpy().tolist()


class SeededSamples(paddle.io.Dataset):
    """Sample ``(epoch, index)`` of a PaddleSeg dataset, its random augmentation seeded from
    (seed, epoch, index), so it is the same in any worker and after a resume.

    Returns ``(image, label, index, failure)``; ``failure`` is '' or a one-line message naming the file
    (an exception inside a DataLoader thread would hang Paddle's loader instead of surfacing).
    """

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        sample_seed = derive_seed(self.seed, epoch, index)
        random.seed(sample_seed)  # PaddleSeg's transforms draw from both global generators
        np.random.seed(sample_seed)
        try:
            sample = self.dataset[index]
            return sample['img'], sample['label'], index, ''
        except Exception as err:  # reported with the file name by the collate step
            return None, None, index, describe_failure(self.dataset.file_list[index], err)


def describe_failure(files, err):
    """A one-line message naming the image or label file that could not be loaded."""
    import cv2  # lazy: only needed when a sample failed
    from PIL import Image
    image_path, label_path = files
    for kind, path in (('image', image_path), ('label', label_path)):
        if path is None:
            continue
        if not os.path.isfile(path):
            return f'{path}: {kind} file missing; expected the file listed by the dataset'
        if kind == 'image' and cv2.imread(path) is None:
            return f'{path}: unreadable image; expected a PNG/JPEG file'
        if kind == 'label':
            try:
                Image.open(path).load()
            except Exception:
                return f'{path}: unreadable label; expected a single-channel PNG of class ids'
    return f'{image_path}: could not be loaded and transformed: {one_line(err)}'


def die_with_parent(worker_id=None):
    """DataLoader ``worker_init_fn``: ask Linux to SIGKILL this worker when the trainer dies, so a killed
    run leaves no orphaned loader processes holding its pipes open (elsewhere: no-op)."""
    try:
        import ctypes  # lazy: only in loader worker processes
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the trainer died before the request took effect
        os._exit(1)


class BatchCollator:
    """Stack samples into (images, labels, indices, failure) and check the labels of the whole batch.

    ``failure`` is a uint8 array holding a UTF-8 message, or a single 0 byte when the batch is good.

    Args:
        file_list (list): The dataset's (image, label) paths, to name a bad file.
        num_classes (int): Labels must lie in [0, num_classes) ...
        ignore_index (int): ... or equal this value.
    """

    def __init__(self, file_list, num_classes, ignore_index):
        self.file_list = file_list
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __call__(self, samples):
        indices = np.array([s[2] for s in samples], 'int64')
        try:
            failure = next((s[3] for s in samples if s[3]), '')
            if not failure:
                images = np.stack([s[0] for s in samples]).astype('float32')
                labels = np.stack([s[1] for s in samples]).astype('int64')
                if labels.ndim == 4:
                    labels = labels[:, 0]
                failure = self.label_failure(labels, indices)
        except ValueError as err:
            failure = (f'{self.file_list[indices[0]][0]}: its batch cannot be stacked ({err}); expected '
                       'transforms that give every image the same size (e.g. RandomPaddingCrop)')
        if failure:
            return np.zeros([1], 'float32'), np.zeros([1], 'int64'), indices, np.frombuffer(
                failure.encode(), 'uint8').copy()
        return images, labels, indices, np.zeros([1], 'uint8')

    def label_failure(self, labels, indices):
        """'' when every label is a class id or the ignore index; else a message naming the label file."""
        for label, index in zip(labels, indices):
            problem = label_problem(label, self.num_classes, self.ignore_index, self.file_list[index][1])
            if problem:
                return problem
        return ''


class EpochShardSampler(paddle.io.DistributedBatchSampler):
    """Endless batches of ``(epoch, index)`` keys: each epoch a permutation seeded from (seed, epoch), padded
    and split into one shard per rank as DistributedBatchSampler does, incomplete batches dropped.

    Args:
        dataset (paddle.io.Dataset): The samples.
        batch_size (int): Per rank.
        num_replicas (int): Number of ranks.
        rank (int): This rank.
        seed (int): Shuffling seed.
        start_batch (int, optional): Batches already consumed (the resumed iteration). Default: 0.
    """

    def __init__(self, dataset, batch_size, num_replicas, rank, seed, start_batch=0):
        super().__init__(dataset, batch_size, num_replicas=num_replicas, rank=rank, shuffle=True, drop_last=True)
        self.seed = seed
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self):
        """Batches each rank takes from one epoch."""
        return self.num_samples // self.batch_size

    def shard(self, epoch):
        """This rank's indices of ``epoch``, in order."""
        size = len(self.dataset)
        order = np.random.RandomState(derive_seed(self.seed, 0x5EED, epoch)).permutation(size)
        order = np.resize(order, self.total_size)  # pads by repeating from the start
        return order[self.local_rank::self.nranks]

    def __iter__(self):
        epoch, skip = divmod(self.start_batch, self.batches_per_epoch)
        while True:
            shard = self.shard(epoch)
            for batch in range(skip, self.batches_per_epoch):
                yield [(epoch, int(i)) for i in shard[batch * self.batch_size:(batch + 1) * self.batch_size]]
            epoch, skip = epoch + 1, 0

    def __len__(self):
        return self.batches_per_epoch
