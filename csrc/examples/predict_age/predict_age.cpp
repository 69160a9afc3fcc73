// predict_age: the smallest C++ service around a facecore age model.
//
//   predict_age <model.pt> <image.ppm|image.pgm> [facecore library .so]
//
// 1. dlopen()s facecore's compiled op library (argument 3, else $FACECORE_LIBRARY; get the
//    path with `python -c "import facecore; print(facecore.library_path())"`). It registers
//    torch.ops.facecore.* with the dispatcher; it is built with py_limited_api and does not
//    need libtorch_python, so a plain libtorch process can load it.
// 2. torch::jit::load()s a model written by facecore.export_model and checks that the
//    library implements the op-set version the model was exported with.
// 3. Reads a binary PPM (P6) or PGM (P5) image, scales it to [0, 1] and, when it is not
//    already S x S (S = the model's input_size; an S x S image is taken as preprocessed),
//    keeps the centred square of the model's `crop_fraction` of the shorter side (when
//    < 1), resizes the shorter side to the model's `resize` and center-crops S x S, as
//    Python's predictor does (bilinear, antialiased; the predictor resizes with Pillow, so
//    pass an image preprocessed to S x S for bit-identical results).
// 4. Runs forward() on the [1, 3, S, S] batch (the exported module normalises) and prints
//    the age (expected rank + age_offset), the predicted class and the class probabilities.
//
// Exit status: 0 on success, 1 on any error (with a message on stderr), 2 on bad usage.

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/script.h>

namespace {

struct Image {
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;   // 1 (PGM) or 3 (PPM)
  int64_t maxval = 255;
  std::vector<float> data;  // HWC, values in [0, 1]
};

// Next header token of a PNM file, skipping whitespace and '#' comments.
std::string next_token(std::istream& in) {
  std::string token;
  int c;
  while ((c = in.get()) != EOF) {
    if (c == '#') {
      while ((c = in.get()) != EOF && c != '\n') {
      }
    } else if (!std::isspace(c)) {
      token.push_back(static_cast<char>(c));
      break;
    }
  }
  while ((c = in.peek()) != EOF && !std::isspace(c) && c != '#') {
    token.push_back(static_cast<char>(in.get()));
  }
  if (token.empty()) {
    throw std::runtime_error("truncated header");
  }
  return token;
}

int64_t header_int(std::istream& in, const char* what) {
  const std::string t = next_token(in);
  for (char ch : t) {
    if (!std::isdigit(static_cast<unsigned char>(ch))) {
      throw std::runtime_error(std::string("bad ") + what + " '" + t + "' in header");
    }
  }
  return std::stoll(t);
}

// Binary PPM (P6) / PGM (P5), 8 or 16 bit (maxval <= 65535, big-endian samples).
Image read_pnm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open image file '" + path + "'");
  }
  try {
    Image img;
    const std::string magic = next_token(in);
    if (magic == "P6") {
      img.channels = 3;
    } else if (magic == "P5") {
      img.channels = 1;
    } else {
      throw std::runtime_error("not a binary PPM (P6) or PGM (P5) file (magic '" + magic + "')");
    }
    img.width = header_int(in, "width");
    img.height = header_int(in, "height");
    img.maxval = header_int(in, "maxval");
    if (img.width < 1 || img.height < 1 || img.width > 65536 || img.height > 65536) {
      throw std::runtime_error("bad size " + std::to_string(img.width) + "x" +
                               std::to_string(img.height));
    }
    if (img.maxval < 1 || img.maxval > 65535) {
      throw std::runtime_error("maxval must be in 1..65535, got " + std::to_string(img.maxval));
    }
    in.get();  // the single whitespace byte before the raster
    const int64_t samples = img.width * img.height * img.channels;
    const int64_t bytes_per_sample = img.maxval < 256 ? 1 : 2;
    std::vector<unsigned char> raw(static_cast<size_t>(samples * bytes_per_sample));
    in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
    if (in.gcount() != static_cast<std::streamsize>(raw.size())) {
      throw std::runtime_error("truncated raster: expected " + std::to_string(raw.size()) +
                               " bytes, got " + std::to_string(in.gcount()));
    }
    img.data.resize(static_cast<size_t>(samples));
    const float maxval = static_cast<float>(img.maxval);
    for (int64_t i = 0; i < samples; ++i) {
      const int v = bytes_per_sample == 1 ? raw[i] : (raw[2 * i] << 8) | raw[2 * i + 1];
      if (v > img.maxval) {
        throw std::runtime_error("sample " + std::to_string(v) + " exceeds maxval");
      }
      img.data[static_cast<size_t>(i)] = static_cast<float>(v) / maxval;
    }
    return img;
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read '" + path + "': " + e.what());
  }
}

// Python's round() (half to even, the predictor's rounding) of a non-negative value.
int64_t round_half_even(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

// The centred h x w window of x [1, C, H, W], placed as the predictor's CenterCrop.
torch::Tensor center_crop(const torch::Tensor& x, int64_t h, int64_t w) {
  const int64_t top = round_half_even((x.size(2) - h) / 2.0);
  const int64_t left = round_half_even((x.size(3) - w) / 2.0);
  return x.slice(2, top, top + h).slice(3, left, left + w);
}

// [1, 3, S, S] float in [0, 1]: gray is replicated; non-S x S images keep the centred
// square of `crop_fraction` x the shorter side (when < 1), are resized (shorter side to
// `resize`, or the whole image to resize x resize when `square`; bilinear with
// antialiasing) and center-cropped to S x S.
torch::Tensor to_batch(const Image& img, int64_t size, int64_t resize, bool square,
                       double crop_fraction) {
  auto hwc = torch::from_blob(const_cast<float*>(img.data.data()),
                              {img.height, img.width, img.channels}, torch::kFloat32);
  auto x = hwc.permute({2, 0, 1}).unsqueeze(0).contiguous().clone();
  if (img.channels == 1) {
    x = x.expand({1, 3, img.height, img.width}).contiguous();
  }
  if (img.height != size || img.width != size) {
    int64_t ih = img.height;
    int64_t iw = img.width;
    if (crop_fraction < 1.0) {
      const int64_t side =
          std::max<int64_t>(1, round_half_even(crop_fraction * std::min(ih, iw)));
      std::cerr << "note: keeping the centred " << side << "x" << side << " square (crop_fraction "
                << crop_fraction << ")\n";
      x = center_crop(x, side, side).contiguous();
      ih = iw = side;
    }
    std::cerr << "note: resizing " << iw << "x" << ih
              << (square ? " (to a square of " : " (shorter side ") << resize
              << " px) and center-cropping " << size << "x" << size
              << " in C++; results differ slightly from Pillow's\n";
    const bool tall = ih >= iw;
    int64_t h = tall ? static_cast<int64_t>(resize * ih / iw) : resize;
    int64_t w = tall ? resize : static_cast<int64_t>(resize * iw / ih);
    if (square) {
      h = w = resize;
    }
    x = at::_upsample_bilinear2d_aa(x, {h, w}, /*align_corners=*/false).clamp(0.0, 1.0);
    x = center_crop(x, size, size).contiguous();
  }
  return x;
}

std::string library_path(int argc, char** argv) {
  if (argc > 3) {
    return argv[3];
  }
  if (const char* env = std::getenv("FACECORE_LIBRARY")) {
    return env;
  }
  throw std::runtime_error(
      "no facecore library given: pass it as the third argument or in $FACECORE_LIBRARY "
      "(python -c \"import facecore; print(facecore.library_path())\")");
}

int run(int argc, char** argv) {
  const std::string model_path = argv[1];
  const std::string image_path = argv[2];

  const std::string lib = library_path(argc, argv);
  if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    throw std::runtime_error("cannot load facecore's library '" + lib + "': " + dlerror());
  }

  torch::jit::Module model;
  try {
    model = torch::jit::load(model_path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot load TorchScript model '" + model_path +
                             "': " + e.what_without_backtrace());
  }
  model.eval();
  if (!model.hasattr("task") || !model.hasattr("op_version") ||
      !model.find_method("library_op_version")) {
    throw std::runtime_error("'" + model_path +
                             "' is not a facecore export (see facecore.export_model)");
  }
  const std::string task = model.attr("task").toStringRef();
  if (task != "age") {
    throw std::runtime_error("'" + model_path + "' is a '" + task +
                             "' model; predict_age needs an age model");
  }
  // The op-set version the model was exported with vs the one the loaded library implements.
  const int64_t exported_ops = model.attr("op_version").toInt();
  const int64_t library_ops = model.run_method("library_op_version").toInt();
  if (exported_ops != library_ops) {
    throw std::runtime_error(
        "'" + model_path + "' was exported with facecore op version " +
        std::to_string(exported_ops) + ", but the library '" + lib +
        "' implements op version " + std::to_string(library_ops) +
        ": re-export the model with the installed facecore, or use the facecore release it "
        "was exported with");
  }
  const int64_t size = model.attr("input_size").toInt();
  const int64_t resize = model.hasattr("resize") ? model.attr("resize").toInt() : size;
  const bool square =
      model.hasattr("resize_mode") && model.attr("resize_mode").toStringRef() == "square";
  // exports before crop_fraction existed crop nothing
  const double crop_fraction =
      model.hasattr("crop_fraction") ? model.attr("crop_fraction").toDouble() : 1.0;
  const double age_offset = model.attr("age_offset").toDouble();
  const auto names = model.attr("class_names").toList();

  const Image img = read_pnm(image_path);
  const torch::Tensor batch = to_batch(img, size, resize, square, crop_fraction);

  c10::InferenceMode guard;
  const auto out = model.forward({batch}).toGenericDict();
  const torch::Tensor expected = out.at("expected").toTensor();
  const torch::Tensor class_probs = out.at("class_probs").toTensor();
  const int64_t label = out.at("label").toTensor().item<int64_t>();

  const double rank = expected.item<double>();
  std::cout << std::setprecision(9);
  std::cout << "model: " << model_path << " (task age, input " << size << "x" << size
            << ", op version " << exported_ops << ")\n";
  std::cout << "image: " << image_path << " (" << img.width << "x" << img.height << ", "
            << img.channels << " channel" << (img.channels == 1 ? "" : "s") << ")\n";
  std::cout << "age: " << rank + age_offset << "\n";
  std::cout << "expected: " << rank << "\n";
  std::cout << "label: " << label;
  if (label >= 0 && label < static_cast<int64_t>(names.size())) {
    std::cout << " (" << names.get(label).toStringRef() << ")";
  }
  std::cout << "\nclass_probs:";
  const auto probs = class_probs.to(torch::kDouble).contiguous();
  for (int64_t k = 0; k < probs.size(1); ++k) {
    std::cout << " " << probs[0][k].item<double>();
  }
  std::cout << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " <model.pt> <image.ppm|image.pgm> [libfacecore.so]\n";
    return 2;
  }
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
